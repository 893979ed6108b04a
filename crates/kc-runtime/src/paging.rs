//! Keyset pagination: page sizes and opaque page tokens that carry the sort key of the last
//! item of a page (never an offset).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Violation;

/// Parses `page_size`: 0 means `default`; otherwise 1 to `max`.
pub fn page_size(value: i32, default: u32, max: u32) -> Result<u32, Violation> {
    match value {
        0 => Ok(default),
        v if v < 0 => Err(Violation::new("page_size", "must not be negative")),
        v if v as u32 > max => Err(Violation::new(
            "page_size",
            format!("must be at most {max}"),
        )),
        v => Ok(v as u32),
    }
}

/// Separates the parts of a key inside a token (never part of a key).
const SEPARATOR: char = '\u{1f}';

/// Encodes the sort key of the last item of a page as an opaque page token.
pub fn encode_token(key: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(key.join(&SEPARATOR.to_string()))
}

/// Decodes a page token into the `parts` parts of its key; `None` for an empty token.
pub fn decode_token(token: &str, parts: usize) -> Result<Option<Vec<String>>, Violation> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Violation::new("page_token", "not a page token this service issued");
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let key: Vec<String> = text.split(SEPARATOR).map(str::to_owned).collect();
    if key.len() != parts {
        return Err(invalid());
    }
    Ok(Some(key))
}

/// One page of a list and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether another page follows.
    pub more: bool,
}

impl<T> Page<T> {
    /// The page of `rows` fetched with one row more than `size`: a next page exists when that
    /// extra row came back, and it is dropped.
    pub fn from_rows(mut rows: Vec<T>, size: u32) -> Self {
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        Self { items: rows, more }
    }
}

/// A page of at most `size` items that `read(conn, limit)` reads on a connection of
/// `pool`: `limit` is one row more than `size`, to tell whether more follow
/// ([`Page::from_rows`]). `read` fails with `sqlx::Error` or with the service's own error.
pub async fn read_page<T, E, R>(
    pool: &sqlx::PgPool,
    size: u32,
    read: impl AsyncFnOnce(&mut sqlx::PgConnection, i64) -> Result<Vec<T>, R>,
) -> Result<Page<T>, E>
where
    E: From<sqlx::Error> + From<R>,
{
    let mut conn = pool.acquire().await?;
    let rows = read(&mut conn, i64::from(size) + 1).await?;
    Ok(Page::from_rows(rows, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let token = encode_token(&["4", "0191f1d2-0000-7000-8000-000000000000"]);
        assert_eq!(
            decode_token(&token, 2).unwrap().unwrap(),
            vec!["4", "0191f1d2-0000-7000-8000-000000000000"]
        );
        assert_eq!(decode_token("", 2).unwrap(), None);
        assert!(decode_token(&token, 1).is_err());
        assert!(decode_token("%%%", 1).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(page_size(0, 100, 1000), Ok(100));
        assert_eq!(page_size(5, 100, 1000), Ok(5));
        assert!(page_size(-1, 100, 1000).is_err());
        assert!(page_size(1001, 100, 1000).is_err());
        let page = Page::from_rows(vec![1, 2, 3], 2);
        assert_eq!((page.items, page.more), (vec![1, 2], true));
        let page = Page::from_rows(vec![1, 2], 2);
        assert_eq!((page.items, page.more), (vec![1, 2], false));
    }
}
