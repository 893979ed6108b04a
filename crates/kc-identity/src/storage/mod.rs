//! SQL of the identity schema. Functions take a connection (inside the caller's
//! transaction when atomicity matters) and return domain types.

pub(crate) mod code_attempts;
pub(crate) mod keys;
pub(crate) mod revocations;
pub(crate) mod service_accounts;
pub(crate) mod sessions;
pub(crate) mod throttle;
pub(crate) mod users;
pub(crate) mod verifications;
