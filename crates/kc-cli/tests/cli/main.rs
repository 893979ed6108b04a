//! Cross-process tests of `kc`: the real binary against the suite's real services (the
//! sandbox of kc-suite-tests), one configuration directory per test. One module per area.

mod harness;

mod access;
mod contacts;
mod errors;
mod import;
mod requests;
mod service;
mod session;
mod sites;
mod tls;
