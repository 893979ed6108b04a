//! What every keycontacts service binary shares, written once: server bootstrap, config,
//! telemetry, bearer-token authentication (refusing the access tokens identity revoked), the
//! error → `tonic::Status` mapping, the Postgres pool with migrations, the transactional
//! outbox with its `WatchEvents` stream, and the helpers the gRPC handlers share (paging,
//! value parsing, errors to `Status`), and the Prometheus metrics endpoint.

#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod auth;
pub mod backoff;
pub mod bootstrap;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod outbox;
pub mod paging;
pub mod revocation;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod sweep;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod values;

pub use auth::Caller;
pub use error::{ApiError, Violation, Violations};
pub use shutdown::Shutdown;
