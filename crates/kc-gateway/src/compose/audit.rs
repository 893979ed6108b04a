//! ListSiteAudit: the registry's and access management's audit records of a site (L1, T5)
//! merged newest first, with the actors' display names.
//!
//! Paging over two keyset-paged sources: the page token holds, per source, the source's
//! own page token where the gateway's position lies and how many records after it were
//! already shown (`skip`), or that the source is exhausted. A page reads `skip + size`
//! records of each source, merges them and keeps `size`. When a page ends inside a source's
//! batch, the gateway asks the source for a token exactly at that point (reading the
//! `skip + taken` records again) so that the next page starts at a keyset position and
//! records added meanwhile never shift it; only if the source changed between those two
//! reads does the token keep a `skip`.

use kc_proto::gateway::{self as pb, AuditSource};
use kc_proto::{access, audit, contacts};
use kc_runtime::paging::{decode_token, encode_token};

use super::{DOWNSTREAM_PAGE_MAX, Gateway, id, page_size};
use crate::clients::Ctx;
use crate::error::GatewayError;
use crate::policy::method;

/// Marks an exhausted source in a page token (never part of a source's token, which is
/// URL-safe base64).
const DONE: &str = "!";

/// Where the listing of one source stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SourceCursor {
    /// After the source's page token `token` (empty: from the newest), `skip` records
    /// already shown.
    At {
        /// The source's own page token.
        token: String,
        /// Records after it already shown.
        skip: usize,
    },
    /// Every record of the source was shown.
    Done,
}

impl SourceCursor {
    fn start() -> Self {
        Self::At {
            token: String::new(),
            skip: 0,
        }
    }

    fn encode(&self) -> (String, String) {
        match self {
            Self::At { token, skip } => (token.clone(), skip.to_string()),
            Self::Done => (DONE.to_owned(), "0".to_owned()),
        }
    }

    /// `None` when the parts are not a cursor this service issued. A skip is never more
    /// than one downstream page (a longer one is moved into the source's token), so a
    /// larger one is refused rather than read (or overflowing the arithmetic of a page).
    fn decode(token: &str, skip: &str) -> Option<Self> {
        if token == DONE {
            return Some(Self::Done);
        }
        let skip: usize = skip.parse().ok()?;
        if skip > DOWNSTREAM_PAGE_MAX as usize {
            return None;
        }
        Some(Self::At {
            token: token.to_owned(),
            skip,
        })
    }
}

/// The position of a ListSiteAudit listing in both sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuditCursor {
    /// The registry's records.
    pub contacts: SourceCursor,
    /// Access management's records.
    pub access: SourceCursor,
}

impl AuditCursor {
    /// The position of a page token; the newest records for an empty one.
    pub(super) fn decode(page_token: &str) -> Result<Self, GatewayError> {
        let Some(parts) = decode_token(page_token, 4)? else {
            return Ok(Self {
                contacts: SourceCursor::start(),
                access: SourceCursor::start(),
            });
        };
        let bad = || GatewayError::invalid("page_token", "not a page token this service issued");
        Ok(Self {
            contacts: SourceCursor::decode(&parts[0], &parts[1]).ok_or_else(bad)?,
            access: SourceCursor::decode(&parts[2], &parts[3]).ok_or_else(bad)?,
        })
    }

    /// The page token of this position; empty when both sources are exhausted.
    pub(super) fn encode(&self) -> String {
        if self.contacts == SourceCursor::Done && self.access == SourceCursor::Done {
            return String::new();
        }
        let (c_token, c_skip) = self.contacts.encode();
        let (a_token, a_skip) = self.access.encode();
        encode_token(&[&c_token, &c_skip, &a_token, &a_skip])
    }
}

/// One read of a source: records newest first and the source's next page token.
#[derive(Debug, Clone, Default)]
pub(super) struct Fetched {
    /// The records, newest first.
    pub entries: Vec<pb::AuditEntry>,
    /// The source's token of the next page; empty on its last page.
    pub next: String,
}

/// One page of the merged listing.
#[derive(Debug, Clone)]
pub(super) struct AuditPage {
    /// The records, newest first.
    pub entries: Vec<pb::AuditEntry>,
    /// Where the next page starts.
    pub next: AuditCursor,
}

/// Merges two newest-first lists into the `size` newest records, keeping each list's own
/// order; on equal times the registry's record comes first. Returns the merged records
/// and how many were taken from each list.
pub(super) fn merge_newest_first(
    contacts: &[pb::AuditEntry],
    access: &[pb::AuditEntry],
    size: usize,
) -> (Vec<pb::AuditEntry>, usize, usize) {
    let key = |entry: &pb::AuditEntry| {
        let time = entry.create_time.unwrap_or_default();
        (time.seconds, time.nanos)
    };
    let (mut i, mut j) = (0, 0);
    let mut merged = Vec::with_capacity(size.min(contacts.len() + access.len()));
    while merged.len() < size {
        let take_contacts = match (contacts.get(i), access.get(j)) {
            (Some(c), Some(a)) => key(c) >= key(a),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_contacts {
            merged.push(contacts[i].clone());
            i += 1;
        } else {
            merged.push(access[j].clone());
            j += 1;
        }
    }
    (merged, i, j)
}

/// A source's batch for one page.
struct Loaded {
    /// The cursor it was read from (after a rebase when the skip was too large).
    token: String,
    skip: usize,
    /// The records after the skip.
    entries: Vec<pb::AuditEntry>,
    /// Whether the read reached the source's last record.
    last: bool,
    /// The source's token after the read.
    next: String,
    done: bool,
}

/// Reads the batch of one source for a page of `size`.
async fn load<F, Fut>(
    fetch: &F,
    cursor: &SourceCursor,
    size: usize,
    max_page: usize,
) -> Result<Loaded, GatewayError>
where
    F: Fn(String, usize) -> Fut,
    Fut: Future<Output = Result<Fetched, GatewayError>>,
{
    let SourceCursor::At { token, skip } = cursor else {
        return Ok(Loaded {
            token: String::new(),
            skip: 0,
            entries: Vec::new(),
            last: true,
            next: String::new(),
            done: true,
        });
    };
    let (mut token, mut skip) = (token.clone(), *skip);
    if skip + size > max_page {
        // Move the source's token past the records already shown.
        let passed = fetch(token.clone(), skip).await?;
        if passed.next.is_empty() {
            return Ok(Loaded {
                token,
                skip,
                entries: Vec::new(),
                last: true,
                next: String::new(),
                done: true,
            });
        }
        (token, skip) = (passed.next, 0);
    }
    let fetched = fetch(token.clone(), skip + size).await?;
    let last = fetched.next.is_empty();
    let entries = fetched.entries.into_iter().skip(skip).collect();
    Ok(Loaded {
        token,
        skip,
        entries,
        last,
        next: fetched.next,
        done: false,
    })
}

/// Where a source stands after `taken` of its batch were shown.
async fn advance<F, Fut>(
    fetch: &F,
    loaded: &Loaded,
    taken: usize,
) -> Result<SourceCursor, GatewayError>
where
    F: Fn(String, usize) -> Fut,
    Fut: Future<Output = Result<Fetched, GatewayError>>,
{
    if loaded.done {
        return Ok(SourceCursor::Done);
    }
    if taken == loaded.entries.len() {
        return Ok(if loaded.last {
            SourceCursor::Done
        } else {
            SourceCursor::At {
                token: loaded.next.clone(),
                skip: 0,
            }
        });
    }
    if taken == 0 {
        return Ok(SourceCursor::At {
            token: loaded.token.clone(),
            skip: loaded.skip,
        });
    }
    // The page ended inside the batch: ask for a token exactly after the last record shown.
    let shown = loaded.skip + taken;
    let exact = fetch(loaded.token.clone(), shown).await?;
    let last_shown = &loaded.entries[taken - 1].audit_id;
    let same = exact
        .entries
        .last()
        .is_some_and(|entry| entry.audit_id == *last_shown);
    Ok(if same && !exact.next.is_empty() {
        SourceCursor::At {
            token: exact.next,
            skip: 0,
        }
    } else {
        SourceCursor::At {
            token: loaded.token.clone(),
            skip: shown,
        }
    })
}

/// One page of `size` records of both sources from `cursor`, reading each source with its
/// `fetch(token, size)` and never asking either for more than `max_page` records at once.
pub(super) async fn audit_page<FC, FutC, FA, FutA>(
    cursor: &AuditCursor,
    size: usize,
    max_page: usize,
    fetch_contacts: FC,
    fetch_access: FA,
) -> Result<AuditPage, GatewayError>
where
    FC: Fn(String, usize) -> FutC,
    FutC: Future<Output = Result<Fetched, GatewayError>>,
    FA: Fn(String, usize) -> FutA,
    FutA: Future<Output = Result<Fetched, GatewayError>>,
{
    let (contacts, access) = futures::try_join!(
        load(&fetch_contacts, &cursor.contacts, size, max_page),
        load(&fetch_access, &cursor.access, size, max_page)
    )?;
    let (entries, taken_contacts, taken_access) =
        merge_newest_first(&contacts.entries, &access.entries, size);
    let (next_contacts, next_access) = futures::try_join!(
        advance(&fetch_contacts, &contacts, taken_contacts),
        advance(&fetch_access, &access, taken_access)
    )?;
    Ok(AuditPage {
        entries,
        next: AuditCursor {
            contacts: next_contacts,
            access: next_access,
        },
    })
}

impl Fetched {
    /// One read of `source`: its records as entries of the merged listing (their actors'
    /// names filled in later) and its next page token.
    fn of(source: AuditSource, records: Vec<audit::AuditRecord>, next: String) -> Self {
        let entry = |record: audit::AuditRecord| pb::AuditEntry {
            source: source as i32,
            audit_id: record.audit_id,
            create_time: record.create_time,
            actor_id: record.actor_id,
            actor_display_name: String::new(),
            via_service: record.via_service,
            action: record.action,
            resource_id: record.resource_id,
            before_json: record.before_json,
            after_json: record.after_json,
            reason: record.reason,
        };
        Self {
            entries: records.into_iter().map(entry).collect(),
            next,
        }
    }
}

impl Gateway {
    /// `ListSiteAudit` (L1): CONTACTS_VIEW and ACCESS_VIEW, checked while both sources are
    /// read; merged newest first, with the actors' names.
    pub(crate) async fn list_site_audit(
        &self,
        ctx: &Ctx,
        request: pb::ListSiteAuditRequest,
    ) -> Result<pb::ListSiteAuditResponse, GatewayError> {
        let site_id = id("site_id", &request.site_id)?;
        let size = page_size(request.page_size, 100)? as usize;
        let cursor = AuditCursor::decode(&request.page_token)?;
        let site = site_id.to_string();
        let fetch_contacts = |page_token: String, count: usize| {
            let request = contacts::ListAuditRecordsRequest {
                site_id: site.clone(),
                page_size: count as i32,
                page_token,
            };
            async move {
                let response = self.clients.list_contacts_audit(ctx, request).await?;
                let (records, next) = (response.records, response.next_page_token);
                Ok(Fetched::of(AuditSource::Contacts, records, next))
            }
        };
        let fetch_access = |page_token: String, count: usize| {
            let request = access::ListAuditRecordsRequest {
                site_id: site.clone(),
                page_size: count as i32,
                page_token,
            };
            async move {
                let response = self.clients.list_access_audit(ctx, request).await?;
                let (records, next) = (response.records, response.next_page_token);
                Ok(Fetched::of(AuditSource::Access, records, next))
            }
        };
        let (allowed, page) = futures::join!(
            self.admit_site(ctx, method::LIST_SITE_AUDIT, site_id),
            audit_page(
                &cursor,
                size,
                DOWNSTREAM_PAGE_MAX as usize,
                fetch_contacts,
                fetch_access
            )
        );
        allowed?;
        let mut page = page?;
        let users = self
            .users_by_id(ctx, page.entries.iter().map(|e| e.actor_id.clone()))
            .await?;
        for entry in &mut page.entries {
            if let Some(user) = users.get(&entry.actor_id) {
                entry.actor_display_name = user.display_name.clone();
            }
        }
        Ok(pb::ListSiteAuditResponse {
            entries: page.entries,
            next_page_token: page.next.encode(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A keyset-paged source, newest first, whose tokens name the last record shown.
    #[derive(Default)]
    struct Source {
        /// Newest first.
        records: Mutex<Vec<pb::AuditEntry>>,
    }

    impl Source {
        fn new(source: AuditSource, times: &[i64]) -> Self {
            let mut records: Vec<_> = times.iter().map(|t| entry(source, *t)).collect();
            records.sort_by_key(|e| std::cmp::Reverse(e.create_time.unwrap().seconds));
            Self {
                records: Mutex::new(records),
            }
        }

        /// Records a change now: it becomes the newest.
        fn add(&self, source: AuditSource, time: i64) {
            self.records.lock().unwrap().insert(0, entry(source, time));
        }

        fn fetch(&self, token: String, size: usize) -> Result<Fetched, GatewayError> {
            assert!(size <= MAX_PAGE, "asked for {size} records");
            let records = self.records.lock().unwrap();
            let start = if token.is_empty() {
                0
            } else {
                records
                    .iter()
                    .position(|e| e.audit_id == token)
                    .expect("a token this source issued")
                    + 1
            };
            let entries: Vec<_> = records.iter().skip(start).take(size).cloned().collect();
            let next = if start + size < records.len() {
                entries
                    .last()
                    .map(|e| e.audit_id.clone())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            Ok(Fetched { entries, next })
        }
    }

    const MAX_PAGE: usize = 10;

    fn entry(source: AuditSource, time: i64) -> pb::AuditEntry {
        pb::AuditEntry {
            source: source as i32,
            audit_id: format!("{}-{time}", source as i32),
            create_time: Some(prost_types::Timestamp {
                seconds: time,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    async fn page(
        contacts: &Source,
        access: &Source,
        cursor: &AuditCursor,
        size: usize,
    ) -> AuditPage {
        audit_page(
            cursor,
            size,
            MAX_PAGE,
            |token, n| std::future::ready(contacts.fetch(token, n)),
            |token, n| std::future::ready(access.fetch(token, n)),
        )
        .await
        .expect("page")
    }

    /// Every page from the start, re-decoding each token as a caller would.
    async fn all_ids(contacts: &Source, access: &Source, size: usize) -> Vec<String> {
        let mut cursor = AuditCursor::decode("").unwrap();
        let mut ids = Vec::new();
        for _ in 0..100 {
            let page = page(contacts, access, &cursor, size).await;
            assert!(page.entries.len() <= size);
            ids.extend(page.entries.iter().map(|e| e.audit_id.clone()));
            let token = page.next.encode();
            if token.is_empty() {
                return ids;
            }
            cursor = AuditCursor::decode(&token).unwrap();
        }
        panic!("the listing never ended");
    }

    #[test]
    fn merging_keeps_time_order_and_each_lists_order() {
        let c = [
            entry(AuditSource::Contacts, 9),
            entry(AuditSource::Contacts, 5),
        ];
        let a = [entry(AuditSource::Access, 9), entry(AuditSource::Access, 7)];
        let (merged, from_c, from_a) = merge_newest_first(&c, &a, 3);
        let ids: Vec<_> = merged.iter().map(|e| e.audit_id.as_str()).collect();
        assert_eq!(ids, ["1-9", "2-9", "2-7"]);
        assert_eq!((from_c, from_a), (1, 2));
        let (all, _, _) = merge_newest_first(&c, &a, 10);
        assert_eq!(all.len(), 4);
    }

    #[tokio::test]
    async fn pages_walk_both_sources_newest_first_without_gaps_or_repeats() {
        let contacts = Source::new(AuditSource::Contacts, &[1, 4, 5, 8, 12, 13, 20]);
        let access = Source::new(AuditSource::Access, &[2, 3, 6, 7, 9, 10, 11, 14, 30]);
        let mut expected: Vec<(i64, String)> = Vec::new();
        for source in [&contacts, &access] {
            for e in source.records.lock().unwrap().iter() {
                expected.push((e.create_time.unwrap().seconds, e.audit_id.clone()));
            }
        }
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        for size in [1, 2, 3, 4, 7, 10] {
            assert_eq!(
                all_ids(&contacts, &access, size).await,
                expected,
                "size {size}"
            );
        }
    }

    #[tokio::test]
    async fn records_added_between_pages_do_not_shift_the_next_page() {
        let contacts = Source::new(AuditSource::Contacts, &[1, 3, 5, 7]);
        let access = Source::new(AuditSource::Access, &[2, 4, 6, 8]);
        let first = page(&contacts, &access, &AuditCursor::decode("").unwrap(), 3).await;
        let ids: Vec<_> = first.entries.iter().map(|e| e.audit_id.clone()).collect();
        assert_eq!(ids, ["2-8", "1-7", "2-6"]);
        // New changes happen before the caller asks for the next page.
        contacts.add(AuditSource::Contacts, 50);
        access.add(AuditSource::Access, 51);
        let cursor = AuditCursor::decode(&first.next.encode()).unwrap();
        let second = page(&contacts, &access, &cursor, 3).await;
        let ids: Vec<_> = second.entries.iter().map(|e| e.audit_id.clone()).collect();
        assert_eq!(ids, ["1-5", "2-4", "1-3"]);
    }

    #[tokio::test]
    async fn a_large_skip_is_moved_into_the_sources_token() {
        let contacts = Source::new(AuditSource::Contacts, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let access = Source::new(AuditSource::Access, &[]);
        // A position 8 records into the contacts, as a token kept by a changed source.
        let cursor = AuditCursor {
            contacts: SourceCursor::At {
                token: String::new(),
                skip: 8,
            },
            access: SourceCursor::Done,
        };
        let next = page(&contacts, &access, &cursor, 5).await;
        let ids: Vec<_> = next.entries.iter().map(|e| e.audit_id.clone()).collect();
        assert_eq!(ids, ["1-1"]);
        assert_eq!(next.next.encode(), "");
    }

    #[test]
    fn cursors_round_trip_and_bad_tokens_are_invalid() {
        let cursor = AuditCursor {
            contacts: SourceCursor::At {
                token: "abc".into(),
                skip: 3,
            },
            access: SourceCursor::Done,
        };
        assert_eq!(AuditCursor::decode(&cursor.encode()).unwrap(), cursor);
        let done = AuditCursor {
            contacts: SourceCursor::Done,
            access: SourceCursor::Done,
        };
        assert_eq!(done.encode(), "");
        let bad = encode_token(&["abc", "x", "!", "0"]);
        assert_eq!(
            AuditCursor::decode(&bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_forged_skip_beyond_one_downstream_page_is_an_invalid_token() {
        let largest = (DOWNSTREAM_PAGE_MAX as usize).to_string();
        let kept = AuditCursor::decode(&encode_token(&["abc", &largest, "!", "0"])).unwrap();
        assert_eq!(
            kept.contacts,
            SourceCursor::At {
                token: "abc".into(),
                skip: DOWNSTREAM_PAGE_MAX as usize
            }
        );
        for skip in [
            (DOWNSTREAM_PAGE_MAX as usize + 1).to_string(),
            usize::MAX.to_string(),
        ] {
            for forged in [
                encode_token(&["", &skip, "!", "0"]),
                encode_token(&["!", "0", "", &skip]),
            ] {
                let error = AuditCursor::decode(&forged).unwrap_err();
                assert_eq!(error.code(), tonic::Code::InvalidArgument, "{skip}");
            }
        }
    }
}
