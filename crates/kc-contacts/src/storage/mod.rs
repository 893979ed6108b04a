//! SQL of the contacts schema. Functions take a connection (inside the caller's transaction
//! when atomicity matters) and return domain types.

pub(crate) mod access_grants;
pub(crate) mod audit;
pub(crate) mod compliance;
pub(crate) mod contacts;
pub(crate) mod recoveries;
pub(crate) mod sites;
pub(crate) mod support_life;
