//! SQL of the identity schema. Functions take a connection (inside the caller's
//! transaction when atomicity matters) and return domain types.

pub mod code_attempts;
pub mod keys;
pub mod revocations;
pub mod service_accounts;
pub mod sessions;
pub mod throttle;
pub mod users;
pub mod verifications;
