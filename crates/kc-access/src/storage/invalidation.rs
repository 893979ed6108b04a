//! The invalidation notifications of the rights cache: which cached rights a change makes
//! stale, as carried on the Postgres channel every replica listens on (see
//! [`crate::cache`]). Storage defines them because its writers send them inside their
//! transactions; the cache, above storage, reads them.

use std::fmt;
use std::str::FromStr;

use sqlx::PgConnection;
use uuid::Uuid;

/// The Postgres channel on which every replica hears which cached rights to drop.
pub const INVALIDATION_CHANNEL: &str = "kc_access_invalidate";

/// Tells every replica (this one included) to drop the cached rights each of `what` covers,
/// when the caller's transaction commits, in one statement. Postgres delivers notifications
/// only on commit, and drops duplicates within one transaction.
pub async fn notify_invalidations(
    conn: &mut PgConnection,
    what: &[Invalidation],
) -> Result<(), sqlx::Error> {
    if what.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = what.iter().map(Invalidation::to_string).collect();
    sqlx::query("SELECT pg_notify($1, key) FROM unnest($2::text[]) AS key")
        .bind(INVALIDATION_CHANNEL)
        .bind(&keys)
        .execute(conn)
        .await?;
    Ok(())
}

/// What a change makes stale, as carried by the invalidation notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// One user on one site (its grants or roles changed): `<site>:<user>`.
    Pair {
        /// Site id.
        site_id: Uuid,
        /// User id.
        user_id: Uuid,
    },
    /// A whole site (its facts or roles changed): `<site>:*`.
    Site(Uuid),
    /// One user on every site (identity disabled or enabled it): `*:<user>`.
    User(Uuid),
    /// Everything: `*`.
    All,
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pair { site_id, user_id } => write!(f, "{site_id}:{user_id}"),
            Self::Site(site_id) => write!(f, "{site_id}:*"),
            Self::User(user_id) => write!(f, "*:{user_id}"),
            Self::All => f.write_str("*"),
        }
    }
}

/// A notification payload that is not an [`Invalidation`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an invalidation key: {0:?}")]
pub struct InvalidKey(String);

impl FromStr for Invalidation {
    type Err = InvalidKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidKey(text.to_owned());
        if text == "*" {
            return Ok(Self::All);
        }
        let (site, user) = text.split_once(':').ok_or_else(invalid)?;
        let id = |part: &str| Uuid::parse_str(part).map_err(|_| invalid());
        match (site, user) {
            ("*", "*") => Ok(Self::All),
            ("*", user) => Ok(Self::User(id(user)?)),
            (site, "*") => Ok(Self::Site(id(site)?)),
            (site, user) => Ok(Self::Pair {
                site_id: id(site)?,
                user_id: id(user)?,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let site_id = Uuid::now_v7();
        let user_id = Uuid::new_v4();
        for what in [
            Invalidation::Pair { site_id, user_id },
            Invalidation::Site(site_id),
            Invalidation::User(user_id),
            Invalidation::All,
        ] {
            assert_eq!(what.to_string().parse::<Invalidation>(), Ok(what));
        }
        for bad in ["", "x", "x:y", ":", "*:x"] {
            assert!(bad.parse::<Invalidation>().is_err(), "{bad}");
        }
    }
}
