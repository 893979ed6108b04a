//! The commit-ordered position in an outbox stream.

use std::fmt;
use std::str::FromStr;

/// Number of hex digits in an encoded cursor: 16 for the transaction id, 16 for the sequence.
const ENCODED_LEN: usize = 32;

/// A position in a service's event stream: the stream continues with the events after it.
///
/// Events are ordered by the id of the transaction that wrote them, then by their sequence
/// number inside the outbox (see the [module documentation](super) for why). A cursor names
/// the last event a consumer has seen.
///
/// On the wire a cursor is an opaque string: clients must store and send it back unchanged and
/// never interpret it. The empty string is the start of the stream ([`Cursor::START`]); every
/// other string is the [`Display`](fmt::Display) form of a cursor that came with an event.
/// Encoded cursors sort lexicographically in stream order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Id (`xid8`) of the transaction that wrote the event.
    txid: u64,
    /// Sequence number of the event inside the outbox table.
    seq: u64,
}

impl Cursor {
    /// The start of the stream: the next event is the first one ever written.
    pub const START: Cursor = Cursor { txid: 0, seq: 0 };

    /// Builds the cursor of the event with the given transaction id and sequence number.
    pub(crate) fn new(txid: u64, seq: u64) -> Self {
        Self { txid, seq }
    }

    /// Whether this is the start of the stream.
    pub fn is_start(&self) -> bool {
        *self == Self::START
    }

    /// Transaction id of the event, as Postgres `xid8` text.
    pub(crate) fn txid_text(&self) -> String {
        self.txid.to_string()
    }

    /// Sequence number of the event, as the `bigint` stored in the outbox.
    pub(crate) fn seq_i64(&self) -> i64 {
        // The sequence is a positive `bigint`: parsing rejects anything above `i64::MAX`.
        i64::try_from(self.seq).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_start() {
            Ok(())
        } else {
            write!(f, "{:016x}{:016x}", self.txid, self.seq)
        }
    }
}

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Ok(Self::START);
        }
        let is_lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if s.len() != ENCODED_LEN || !s.as_bytes().iter().all(is_lower_hex) {
            return Err(InvalidCursor);
        }
        let (txid, seq) = s.split_at(ENCODED_LEN / 2);
        let txid = u64::from_str_radix(txid, 16).map_err(|_| InvalidCursor)?;
        let seq = u64::from_str_radix(seq, 16).map_err(|_| InvalidCursor)?;
        // Sequence numbers are positive `bigint`s, and only the start has a zero in either part.
        if seq == 0 || txid == 0 || i64::try_from(seq).is_err() {
            return Err(InvalidCursor);
        }
        Ok(Self { txid, seq })
    }
}

/// A string that is not a cursor this service handed out.
///
/// Services map it to `InvalidArgument` on the request field that carried it (for
/// `WatchEvents`, `after_cursor`); [`InvalidCursor::to_status`] does exactly that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid event cursor")]
pub struct InvalidCursor;

impl InvalidCursor {
    /// The `InvalidArgument` status for this error, with a `google.rpc.BadRequest` field
    /// violation on `field` (e.g. `"after_cursor"`).
    pub fn to_status(&self, field: &str) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};

        let message = format!("{field} is not a cursor returned by this service");
        tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            message.clone(),
            ErrorDetails::with_bad_request_violation(field, message),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_the_empty_string() {
        assert_eq!(Cursor::START.to_string(), "");
        assert_eq!("".parse::<Cursor>(), Ok(Cursor::START));
        assert_eq!(Cursor::default(), Cursor::START);
    }

    #[test]
    fn round_trips_and_sorts_like_the_stream() {
        let a = Cursor::new(741, 12);
        let b = Cursor::new(741, 13);
        let c = Cursor::new(742, 2);
        for cursor in [a, b, c] {
            assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        }
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
        assert!(a < b && b < c);
    }

    #[test]
    fn rejects_foreign_strings() {
        let valid = Cursor::new(741, 12).to_string();
        for bad in [
            "x",
            "12",
            &valid[1..],
            &format!("{valid}0"),
            &valid.to_uppercase(),
            "+00000000000002e5000000000000000c",
            "00000000000002e58000000000000000",
            "0000000000000000000000000000000c",
            "00000000000002e50000000000000000",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(InvalidCursor), "{bad}");
        }
    }
}
