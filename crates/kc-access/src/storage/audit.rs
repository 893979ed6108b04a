//! The append-only `audit_records` table (L1, T5): the suite's shared audit store.

pub use kc_runtime::audit::{NewRecord, append, page_of_site};
