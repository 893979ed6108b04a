//! The `contacts` table: one row per role held by one user on one site.

use chrono::{DateTime, Utc};
use kc_rights::rights::Grants;
use kc_runtime::paging::Page;
use sqlx::PgConnection;
use uuid::Uuid;

use super::access_grants;
use super::sites::{SiteRow, select_sites, site_columns, site_from};

use crate::domain::roles::MAX_SECONDARY_CONTACTS;
use crate::domain::{Contact, ContactDetails, ContactRole, KnownPerson, Site};

/// The columns of a [`Contact`], for `concat!` into static SQL.
macro_rules! columns {
    () => {
        "contact_id, site_id, user_id, role, phone, job_title, notification_email, \
         pending_notification_email, pending_expire_time, version, create_time, update_time"
    };
}

#[derive(sqlx::FromRow)]
struct ContactRow {
    contact_id: Uuid,
    site_id: Uuid,
    user_id: Uuid,
    role: i16,
    phone: Option<String>,
    job_title: Option<String>,
    notification_email: Option<String>,
    pending_notification_email: Option<String>,
    pending_expire_time: Option<DateTime<Utc>>,
    version: i64,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl TryFrom<ContactRow> for Contact {
    type Error = sqlx::Error;

    fn try_from(row: ContactRow) -> Result<Self, Self::Error> {
        Ok(Contact {
            contact_id: row.contact_id,
            site_id: row.site_id,
            user_id: row.user_id,
            role: ContactRole::from_number(i32::from(row.role))
                .ok_or_else(|| sqlx::Error::Decode("contacts.role has an unknown value".into()))?,
            details: ContactDetails {
                phone: row.phone,
                job_title: row.job_title,
                notification_email: row.notification_email,
            },
            pending_notification_email: row.pending_notification_email,
            pending_expire_time: row.pending_expire_time,
            version: row.version,
            create_time: row.create_time,
            update_time: row.update_time,
        })
    }
}

/// `SELECT` of a [`Contact`]'s columns and then `$rest` (`FROM`, `WHERE`...), static SQL.
macro_rules! select {
    ($rest:literal) => {
        concat!("SELECT ", columns!(), $rest)
    };
}

/// A query of contact rows.
type ContactQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Postgres, ContactRow, sqlx::postgres::PgArguments>;

/// Runs `query`, which returns at most one contact.
async fn optional(
    conn: &mut PgConnection,
    query: ContactQuery<'_>,
) -> Result<Option<Contact>, sqlx::Error> {
    query
        .fetch_optional(conn)
        .await?
        .map(Contact::try_from)
        .transpose()
}

/// Runs `query`: every contact it returns, in its order.
async fn all(
    conn: &mut PgConnection,
    query: ContactQuery<'_>,
) -> Result<Vec<Contact>, sqlx::Error> {
    let rows = query.fetch_all(conn).await?;
    rows.into_iter().map(Contact::try_from).collect()
}

/// Runs `query`, which writes one contact and returns it, with `details` bound as its last
/// three parameters: phone, job title, notification e-mail.
async fn write_with_details<'q>(
    conn: &mut PgConnection,
    query: ContactQuery<'q>,
    details: &'q ContactDetails,
) -> Result<Contact, sqlx::Error> {
    let row = query
        .bind(&details.phone)
        .bind(&details.job_title)
        .bind(&details.notification_email)
        .fetch_one(conn)
        .await?;
    row.try_into()
}

/// Inserts a role. Fails with the unique violation of `contacts_one_role_per_user` when the
/// user holds the role already, or of `contacts_single_holder` when someone else holds a
/// single-holder role.
pub(crate) async fn insert(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
    role: ContactRole,
    details: &ContactDetails,
) -> Result<Contact, sqlx::Error> {
    let query = sqlx::query_as(concat!(
        "INSERT INTO contacts (contact_id, site_id, user_id, role, phone, job_title, notification_email) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
        columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(site_id)
    .bind(user_id)
    .bind(role.stored());
    write_with_details(conn, query, details).await
}

/// The contact with this id.
pub(crate) async fn get(
    conn: &mut PgConnection,
    contact_id: Uuid,
) -> Result<Option<Contact>, sqlx::Error> {
    let query = sqlx::query_as(select!(" FROM contacts WHERE contact_id = $1")).bind(contact_id);
    optional(conn, query).await
}

/// A contact by id, only when it belongs to `site_id` (any site when `None`): a caller
/// authorised on one site never reaches another site's contact.
pub(crate) async fn get_in_site(
    conn: &mut PgConnection,
    contact_id: Uuid,
    site_id: Option<Uuid>,
) -> Result<Option<Contact>, sqlx::Error> {
    let query = sqlx::query_as(select!(
        " FROM contacts WHERE contact_id = $1 AND ($2::uuid IS NULL OR site_id = $2)"
    ))
    .bind(contact_id)
    .bind(site_id);
    optional(conn, query).await
}

/// Every contact of a site, in display order (role, then creation).
pub(crate) async fn of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
) -> Result<Vec<Contact>, sqlx::Error> {
    let query = sqlx::query_as(select!(
        " FROM contacts WHERE site_id = $1 ORDER BY role, contact_id"
    ))
    .bind(site_id);
    all(conn, query).await
}

/// Up to `limit` contacts of a site with one of `roles` (all roles when empty), after the
/// key `(role, contact_id)`, in display order.
pub(crate) async fn page_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    roles: &[i16],
    after: Option<(i16, Uuid)>,
    limit: i64,
) -> Result<Vec<Contact>, sqlx::Error> {
    let query = sqlx::query_as(select!(
        " FROM contacts WHERE site_id = $1 \
           AND (cardinality($2::smallint[]) = 0 OR role = ANY($2)) \
           AND ($3::smallint IS NULL OR (role, contact_id) > ($3, $4)) \
         ORDER BY role, contact_id LIMIT $5"
    ))
    .bind(site_id)
    .bind(roles)
    .bind(after.map(|(role, _)| role))
    .bind(after.map(|(_, id)| id))
    .bind(limit);
    all(conn, query).await
}

/// `SELECT` of the contacts of `$inner` (a `SELECT` of a [`Contact`]'s columns), each with
/// what the projection of identity's users knows of its person (named users only: a row
/// projected before migration 0009 has no name until the user's next event), ordered by
/// `$order`: static SQL.
macro_rules! with_person {
    ($inner:expr, $order:literal) => {
        concat!(
            "SELECT c.*, u.email AS person_email, u.display_name AS person_display_name, \
             u.state AS person_state FROM (",
            $inner,
            ") c LEFT JOIN user_states u ON u.user_id = c.user_id \
             AND u.display_name IS NOT NULL ORDER BY ",
            $order
        )
    };
}

/// A contact and what the registry's projection of identity's users knows of its person.
#[derive(sqlx::FromRow)]
struct ContactOfPersonRow {
    #[sqlx(flatten)]
    contact: ContactRow,
    person_email: Option<String>,
    person_display_name: Option<String>,
    person_state: Option<i16>,
}

/// A contact with its person, when the projection of identity's users knows it.
pub(crate) type ContactOfPerson = (Contact, Option<KnownPerson>);

/// Runs `query` of [`ContactOfPersonRow`]s.
async fn contacts_of_people(
    conn: &mut PgConnection,
    query: sqlx::query::QueryAs<
        '_,
        sqlx::Postgres,
        ContactOfPersonRow,
        sqlx::postgres::PgArguments,
    >,
) -> Result<Vec<ContactOfPerson>, sqlx::Error> {
    let rows = query.fetch_all(conn).await?;
    rows.into_iter()
        .map(|row| {
            let contact = Contact::try_from(row.contact)?;
            let person = match (row.person_email, row.person_display_name, row.person_state) {
                (Some(email), Some(display_name), Some(state)) => Some(KnownPerson {
                    user_id: contact.user_id,
                    email,
                    display_name,
                    state,
                }),
                _ => None,
            };
            Ok((contact, person))
        })
        .collect()
}

/// The contacts with one of `roles` (not empty) of the first `size` people of a site after
/// the user `after`, in user-id order, each person's by role then creation, each with what
/// the projection of identity's users knows of its person: a keyset page of people,
/// whatever the size of the site. One statement: the page is one snapshot.
///
/// When SITE_USERs are asked for (every person is one, and there may be any number), one
/// range of the unique index on `(site_id, user_id, role)` is read from `after` on: a person
/// has a row per role, but the rows beyond one per person are the site's key contacts, at
/// most [`key_contact_rows`] (C6), so `size + 1` people are within that many more rows.
/// Should the read not settle the page, [`people_of_site_by_person`] does. Otherwise (a few
/// key roles) the people come from the index on `(site_id, role, user_id)`.
pub(crate) async fn people_of_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    roles: &[i16],
    after: Option<Uuid>,
    size: u32,
) -> Result<Page<ContactOfPerson>, sqlx::Error> {
    // The first page starts after the nil id, which no user has: `user_id > $3` is always
    // the index's range, also in a generic plan of the prepared statement.
    let after = after.unwrap_or(Uuid::nil());
    if !roles.contains(&ContactRole::SiteUser.stored()) {
        return people_of_site_by_person(conn, site_id, roles, after, size).await;
    }
    let limit = i64::from(size) + 1 + key_contact_rows();
    let query = sqlx::query_as(with_person!(
        select!(
            " FROM contacts WHERE site_id = $1 AND role = ANY($2) AND user_id > $3 \
             ORDER BY user_id, role LIMIT $4"
        ),
        "c.user_id, c.role"
    ))
    .bind(site_id)
    .bind(roles)
    .bind(after)
    .bind(limit);
    let rows = contacts_of_people(conn, query).await?;
    let read_all = (rows.len() as i64) < limit;
    let page = first_people(rows, size);
    if page.more || read_all {
        return Ok(page);
    }
    people_of_site_by_person(conn, site_id, roles, after, size).await
}

/// Most rows of a site beyond one per person: one for each role with a single holder and
/// the SECONDARYs (C6).
fn key_contact_rows() -> i64 {
    let single = ContactRole::ALL
        .iter()
        .filter(|role| role.is_single_holder())
        .count();
    single as i64 + MAX_SECONDARY_CONTACTS
}

/// [`people_of_site`] by choosing the people first: the first `size + 1` distinct users
/// after `after`, then their contacts with one of `roles`.
async fn people_of_site_by_person(
    conn: &mut PgConnection,
    site_id: Uuid,
    roles: &[i16],
    after: Uuid,
    size: u32,
) -> Result<Page<ContactOfPerson>, sqlx::Error> {
    let query = sqlx::query_as(with_person!(
        select!(
            " FROM contacts WHERE site_id = $1 AND role = ANY($2) AND user_id IN ( \
                 SELECT DISTINCT c.user_id FROM contacts c \
                 WHERE c.site_id = $1 AND c.role = ANY($2) AND c.user_id > $3 \
                 ORDER BY c.user_id LIMIT $4)"
        ),
        "c.user_id, c.role, c.contact_id"
    ))
    .bind(site_id)
    .bind(roles)
    .bind(after)
    .bind(i64::from(size) + 1);
    Ok(first_people(contacts_of_people(conn, query).await?, size))
}

/// The page of the contacts of the first `size` people among `rows` (grouped by person, as
/// [`people_of_site`] reads them, one person more than the page): another page follows when
/// that extra person came, and its contacts are dropped.
fn first_people(mut rows: Vec<ContactOfPerson>, size: u32) -> Page<ContactOfPerson> {
    let mut people = 0;
    let mut previous = None;
    for (index, (contact, _)) in rows.iter().enumerate() {
        if previous != Some(contact.user_id) {
            previous = Some(contact.user_id);
            people += 1;
            if people > size {
                rows.truncate(index);
                return Page {
                    items: rows,
                    more: true,
                };
            }
        }
    }
    Page {
        items: rows,
        more: false,
    }
}

/// A contact and its site, read in one row.
#[derive(sqlx::FromRow)]
struct ContactAndSiteRow {
    #[sqlx(flatten)]
    contact: ContactRow,
    #[sqlx(flatten)]
    site: SiteRow,
}

/// Up to `limit` contacts of a user after `after`, in contact-id order, each with its site:
/// one statement (a user's contacts are read on every `GetMe`).
pub(crate) async fn page_of_user(
    conn: &mut PgConnection,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Contact, Site)>, sqlx::Error> {
    let rows: Vec<ContactAndSiteRow> = sqlx::query_as(concat!(
        "SELECT c.*, site.* FROM (",
        select!(
            " FROM contacts WHERE user_id = $1 AND ($2::uuid IS NULL OR contact_id > $2) \
             ORDER BY contact_id LIMIT $3"
        ),
        ") c CROSS JOIN LATERAL (",
        select_sites!("WHERE s.site_id = c.site_id"),
        ") site ORDER BY c.contact_id"
    ))
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| Ok((row.contact.try_into()?, row.site.try_into()?)))
        .collect()
}

/// The holders of `role` on a site.
pub(crate) async fn holders(
    conn: &mut PgConnection,
    site_id: Uuid,
    role: ContactRole,
) -> Result<Vec<Contact>, sqlx::Error> {
    let query = sqlx::query_as(select!(
        " FROM contacts WHERE site_id = $1 AND role = $2 ORDER BY contact_id"
    ))
    .bind(site_id)
    .bind(role.stored());
    all(conn, query).await
}

/// What the rights of `user_id` on a site depend on (T3, R1), read in one statement: the roles
/// it holds there, whether anyone holds SITE_TECHNICAL there, and its explicit grants from
/// the projection of access management's (nothing granted when it has no row).
pub(crate) async fn person_on_site(
    conn: &mut PgConnection,
    site_id: Uuid,
    user_id: Uuid,
) -> Result<PersonOnSite, sqlx::Error> {
    let (roles, has_site_technical, levels): (Vec<i16>, bool, Option<Vec<i16>>) = sqlx::query_as(
        "SELECT ARRAY(SELECT role FROM contacts WHERE site_id = $1 AND user_id = $2), \
             EXISTS (SELECT FROM contacts WHERE site_id = $1 AND role = $3), \
             (SELECT ARRAY[g.software, g.reporting, g.entitlements, g.account_management, \
                           g.manage_access, g.contact_updates, g.account_documents, g.support] \
              FROM access_grants g WHERE g.site_id = $1 AND g.user_id = $2)",
    )
    .bind(site_id)
    .bind(user_id)
    .bind(ContactRole::SiteTechnical.stored())
    .fetch_one(conn)
    .await?;
    let roles = roles
        .into_iter()
        .map(|number| {
            ContactRole::from_number(i32::from(number))
                .ok_or_else(|| sqlx::Error::Decode("contacts.role has an unknown value".into()))
        })
        .collect::<Result<_, _>>()?;
    let explicit = match levels {
        None => Grants::NONE,
        Some(levels) => access_grants::grants(&levels)?,
    };
    Ok(PersonOnSite {
        roles,
        has_site_technical,
        explicit,
    })
}

/// What [`person_on_site`] reads.
pub(crate) struct PersonOnSite {
    /// The roles the person holds on the site.
    pub(crate) roles: Vec<ContactRole>,
    /// Whether anyone holds SITE_TECHNICAL on the site.
    pub(crate) has_site_technical: bool,
    /// The person's explicit grants on the site.
    pub(crate) explicit: Grants,
}

/// Replaces a contact's details and bumps its version.
pub(crate) async fn update_details(
    conn: &mut PgConnection,
    contact_id: Uuid,
    details: &ContactDetails,
) -> Result<Contact, sqlx::Error> {
    let query = sqlx::query_as(concat!(
        "UPDATE contacts SET phone = $2, job_title = $3, notification_email = $4, \
         version = version + 1, update_time = now() WHERE contact_id = $1 RETURNING ",
        columns!()
    ))
    .bind(contact_id);
    write_with_details(conn, query, details).await
}

/// Gives the role of a contact to another user, in place: the role is never unheld, not even
/// inside the transaction (C8 for PRIMARY). A notification e-mail the previous holder was
/// waiting to confirm is withdrawn (C11): it was never the new holder's.
pub(crate) async fn set_holder(
    conn: &mut PgConnection,
    contact_id: Uuid,
    user_id: Uuid,
    details: &ContactDetails,
) -> Result<Contact, sqlx::Error> {
    withdraw_pending(&mut *conn, contact_id).await?;
    let query = sqlx::query_as(concat!(
        "UPDATE contacts SET user_id = $2, phone = $3, job_title = $4, notification_email = $5, \
         version = version + 1, update_time = now() WHERE contact_id = $1 RETURNING ",
        columns!()
    ))
    .bind(contact_id)
    .bind(user_id);
    write_with_details(conn, query, details).await
}

/// Deletes a contact. Returns the outbox event of its pending notification e-mail, if it
/// had one, whose sealed code the caller empties (C11).
pub(crate) async fn delete(
    conn: &mut PgConnection,
    contact_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let event_id: Option<Option<Uuid>> =
        sqlx::query_scalar("DELETE FROM contacts WHERE contact_id = $1 RETURNING pending_event_id")
            .bind(contact_id)
            .fetch_optional(conn)
            .await?;
    Ok(event_id.flatten())
}

/// What the registry keeps of a notification e-mail waiting for confirmation (C11).
#[derive(Debug, Clone)]
pub(crate) struct NewPending<'a> {
    /// The address asked for.
    pub email: &'a str,
    /// SHA-256 of the code mailed to it.
    pub code_hash: &'a [u8],
    /// When the code expires.
    pub expire_time: DateTime<Utc>,
    /// The outbox event that carries the sealed code.
    pub event_id: Uuid,
}

/// Makes `pending` the contact's pending notification e-mail, with no wrong tries yet.
/// Withdraw the previous one first ([`withdraw_pending`]).
pub(crate) async fn set_pending(
    conn: &mut PgConnection,
    contact_id: Uuid,
    pending: &NewPending<'_>,
) -> Result<Contact, sqlx::Error> {
    let row: ContactRow = sqlx::query_as(concat!(
        "UPDATE contacts SET pending_notification_email = $2, pending_code_hash = $3, \
         pending_expire_time = $4, pending_event_id = $5, pending_failed_attempts = 0 \
         WHERE contact_id = $1 RETURNING ",
        columns!()
    ))
    .bind(contact_id)
    .bind(pending.email)
    .bind(pending.code_hash)
    .bind(pending.expire_time)
    .bind(pending.event_id)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Forgets a contact's pending notification e-mail. Returns its outbox event, if there was
/// one, whose sealed code the caller empties (C11).
pub(crate) async fn withdraw_pending(
    conn: &mut PgConnection,
    contact_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH old AS (SELECT contact_id, pending_event_id FROM contacts \
                      WHERE contact_id = $1 AND pending_event_id IS NOT NULL FOR UPDATE) \
         UPDATE contacts c SET pending_notification_email = NULL, pending_code_hash = NULL, \
             pending_expire_time = NULL, pending_event_id = NULL, pending_failed_attempts = 0 \
         FROM old WHERE c.contact_id = old.contact_id RETURNING old.pending_event_id",
    )
    .bind(contact_id)
    .fetch_optional(conn)
    .await
}

/// A pending notification e-mail found by the hash of its code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingMatch {
    /// The contact waiting for it.
    pub contact_id: Uuid,
    /// Its site.
    pub site_id: Uuid,
    /// Whether its code expired.
    pub expired: bool,
}

/// The contact of `user_id` (on `site_id`, and `contact_id`, when given) whose pending
/// notification e-mail's code has `code_hash`.
pub(crate) async fn find_pending(
    conn: &mut PgConnection,
    user_id: Uuid,
    code_hash: &[u8],
    site_id: Option<Uuid>,
    contact_id: Option<Uuid>,
) -> Result<Option<PendingMatch>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, bool)> = sqlx::query_as(
        "SELECT contact_id, site_id, pending_expire_time <= now() FROM contacts \
         WHERE pending_code_hash = $1 AND user_id = $2 \
           AND ($3::uuid IS NULL OR site_id = $3) AND ($4::uuid IS NULL OR contact_id = $4) \
         LIMIT 1",
    )
    .bind(code_hash)
    .bind(user_id)
    .bind(site_id)
    .bind(contact_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(contact_id, site_id, expired)| PendingMatch {
        contact_id,
        site_id,
        expired,
    }))
}

/// Counts a wrong code against every pending notification e-mail of `user_id` in scope;
/// returns each one's contact, site and wrong tries so far.
pub(crate) async fn count_wrong_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    site_id: Option<Uuid>,
    contact_id: Option<Uuid>,
) -> Result<Vec<(Uuid, Uuid, i32)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE contacts SET pending_failed_attempts = pending_failed_attempts + 1 \
         WHERE user_id = $1 AND pending_code_hash IS NOT NULL \
           AND ($2::uuid IS NULL OR site_id = $2) AND ($3::uuid IS NULL OR contact_id = $3) \
         RETURNING contact_id, site_id, pending_failed_attempts",
    )
    .bind(user_id)
    .bind(site_id)
    .bind(contact_id)
    .fetch_all(conn)
    .await
}

/// Puts a contact's pending notification e-mail in use (C11) if its code still has
/// `code_hash` and has not expired, and bumps the version. Returns the contact and the
/// outbox event whose sealed code the caller empties; `None` when the code is no longer the
/// contact's.
pub(crate) async fn confirm_pending(
    conn: &mut PgConnection,
    contact_id: Uuid,
    code_hash: &[u8],
) -> Result<Option<(Contact, Uuid)>, sqlx::Error> {
    let event_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT pending_event_id FROM contacts WHERE contact_id = $1 \
           AND pending_code_hash = $2 AND pending_expire_time > now()",
    )
    .bind(contact_id)
    .bind(code_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(event_id) = event_id else {
        return Ok(None);
    };
    let row: ContactRow = sqlx::query_as(concat!(
        "UPDATE contacts SET notification_email = pending_notification_email, \
         pending_notification_email = NULL, pending_code_hash = NULL, \
         pending_expire_time = NULL, pending_event_id = NULL, pending_failed_attempts = 0, \
         version = version + 1, update_time = now() WHERE contact_id = $1 RETURNING ",
        columns!()
    ))
    .bind(contact_id)
    .fetch_one(conn)
    .await?;
    Ok(Some((Contact::try_from(row)?, event_id)))
}

/// Withdraws up to `limit` pending notification e-mails whose code expired; returns their
/// outbox events, whose sealed codes the caller empties.
pub(crate) async fn expire_pending(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH gone AS (SELECT contact_id, pending_event_id FROM contacts \
                       WHERE pending_expire_time <= now() \
                       ORDER BY pending_expire_time LIMIT $1 FOR UPDATE SKIP LOCKED) \
         UPDATE contacts c SET pending_notification_email = NULL, pending_code_hash = NULL, \
             pending_expire_time = NULL, pending_event_id = NULL, pending_failed_attempts = 0 \
         FROM gone WHERE c.contact_id = gone.contact_id RETURNING gone.pending_event_id",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(user: u128, role: ContactRole) -> Contact {
        let now = Utc::now();
        Contact {
            contact_id: Uuid::now_v7(),
            site_id: Uuid::nil(),
            user_id: Uuid::from_u128(user),
            role,
            details: ContactDetails::default(),
            pending_notification_email: None,
            pending_expire_time: None,
            version: 1,
            create_time: now,
            update_time: now,
        }
    }

    #[test]
    fn a_page_of_people_keeps_every_contact_of_each_and_drops_the_extra_person() {
        let rows: Vec<ContactOfPerson> = [
            contact(1, ContactRole::Primary),
            contact(1, ContactRole::SiteUser),
            contact(2, ContactRole::SiteUser),
            contact(3, ContactRole::Billing),
            contact(3, ContactRole::SiteUser),
        ]
        .into_iter()
        .map(|contact| (contact, None))
        .collect();
        let users = |page: &Page<ContactOfPerson>| -> Vec<u128> {
            page.items
                .iter()
                .map(|(c, _)| c.user_id.as_u128())
                .collect()
        };
        let page = first_people(rows.clone(), 2);
        assert_eq!((users(&page), page.more), (vec![1, 1, 2], true));
        let page = first_people(rows.clone(), 3);
        assert_eq!((users(&page), page.more), (vec![1, 1, 2, 3, 3], false));
        let page = first_people(rows, 1);
        assert_eq!((users(&page), page.more), (vec![1, 1], true));
        assert!(!first_people(Vec::new(), 1).more);
    }
}
