//! SQL of the contacts schema. Functions take a connection (inside the caller's transaction
//! when atomicity matters) and return domain types.

pub mod access_grants;
pub mod audit;
pub mod contacts;
pub mod sites;
