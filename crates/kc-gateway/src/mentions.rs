//! The ids an encoded protobuf message mentions, found without its schema.
//!
//! The read cache ([`crate::cache`]) forgets, after a write, the answers that mention what the
//! write touched. Every id of the suite (sites, users, contacts, requests) travels as the
//! hyphenated text of a UUID in a string field, so the ids of any message are the
//! length-delimited fields of exactly that form, at any depth. The scan reads the wire format
//! only: a length-delimited field that is not an id is read as a nested message when it is a
//! well-formed one (a string that happens to parse adds, at worst, ids it does not really
//! hold: one more answer forgotten, never one kept too long).

use uuid::Uuid;

/// Deepest nesting of messages scanned (the suite's messages nest three or four deep).
const MAX_DEPTH: usize = 8;

/// Length of a hyphenated UUID's text.
const UUID_TEXT_LEN: usize = 36;

/// Every id `encoded` mentions, sorted, each once.
pub(crate) fn mentioned_ids(encoded: &[u8]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    scan(encoded, 0, &mut ids);
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Adds the ids of `bytes`, read as a message, to `ids`; adds nothing and returns false when
/// `bytes` is not a well-formed message.
fn scan(bytes: &[u8], depth: usize, ids: &mut Vec<Uuid>) -> bool {
    let found_before = ids.len();
    let mut rest = bytes;
    while !rest.is_empty() {
        if !field(&mut rest, depth, ids) {
            ids.truncate(found_before);
            return false;
        }
    }
    true
}

/// Reads one field off the front of `rest`, adding the ids it holds; false when malformed.
fn field(rest: &mut &[u8], depth: usize, ids: &mut Vec<Uuid>) -> bool {
    let Some(key) = varint(rest) else {
        return false;
    };
    if key >> 3 == 0 {
        // Field number 0 does not exist.
        return false;
    }
    match key & 7 {
        0 => varint(rest).is_some(),
        1 => skip(rest, 8),
        5 => skip(rest, 4),
        2 => {
            let Some(len) = varint(rest).and_then(|len| usize::try_from(len).ok()) else {
                return false;
            };
            if len > rest.len() {
                return false;
            }
            let (value, after) = rest.split_at(len);
            *rest = after;
            match uuid_text(value) {
                Some(id) => ids.push(id),
                None if depth < MAX_DEPTH => {
                    scan(value, depth + 1, ids);
                }
                None => {}
            }
            true
        }
        // Groups (3, 4) are not used by the suite's messages; anything else is malformed.
        _ => false,
    }
}

/// The UUID `value` is the hyphenated text of, if it is one.
fn uuid_text(value: &[u8]) -> Option<Uuid> {
    if value.len() != UUID_TEXT_LEN {
        return None;
    }
    Uuid::try_parse_ascii(value).ok()
}

/// Reads a base-128 varint off the front of `rest`.
fn varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0_u64;
    for (index, byte) in rest.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *rest = &rest[index + 1..];
            return Some(value);
        }
    }
    None
}

/// Drops `len` bytes off the front of `rest`; false when it is shorter.
fn skip(rest: &mut &[u8], len: usize) -> bool {
    match rest.get(len..) {
        Some(after) => {
            *rest = after;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use kc_proto::access::{AccessProfile, ListUserAccessResponse};
    use kc_proto::contacts::{Contact, KnownPerson, ListSiteContactsResponse};
    use prost::Message;

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn finds_the_ids_of_nested_and_repeated_messages() {
        let contact = |contact: u128, user: u128| Contact {
            contact_id: id(contact).to_string(),
            site_id: id(1).to_string(),
            user_id: id(user).to_string(),
            etag: "\"3\"".into(),
            ..Default::default()
        };
        let page = ListSiteContactsResponse {
            contacts: vec![contact(10, 20), contact(11, 21)],
            next_page_token: "not-an-id".into(),
            people: vec![KnownPerson {
                user_id: id(22).to_string(),
                display_name: "Someone".into(),
                ..Default::default()
            }],
        };
        assert_eq!(
            mentioned_ids(&page.encode_to_vec()),
            [id(1), id(10), id(11), id(20), id(21), id(22)]
        );
        let access = ListUserAccessResponse {
            profiles: vec![AccessProfile {
                site_id: id(7).to_string(),
                user_id: id(8).to_string(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(mentioned_ids(&access.encode_to_vec()), [id(7), id(8)]);
    }

    #[test]
    fn text_of_the_length_of_an_id_is_not_one_and_malformed_bytes_mention_nothing() {
        let contact = Contact {
            pending_notification_email: "x".repeat(UUID_TEXT_LEN),
            ..Default::default()
        };
        assert!(mentioned_ids(&contact.encode_to_vec()).is_empty());
        assert!(mentioned_ids(&[0x0a, 0x05, 0x01]).is_empty());
        assert!(mentioned_ids(&[0xff; 12]).is_empty());
        assert!(mentioned_ids(&[]).is_empty());
    }
}
