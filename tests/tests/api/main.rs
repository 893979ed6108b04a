//! The cross-service API tests, one test binary: the suite's services on one real Postgres
//! database, started by the sandbox of this crate ([`kc_suite_tests::Sandbox`]), driven with
//! real clients. One module per area.

mod access;
mod gateway;
mod notification;
