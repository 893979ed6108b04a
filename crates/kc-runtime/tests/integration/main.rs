//! kc-runtime against real parts (Postgres, a fake identity, HTTP and gRPC servers on
//! 127.0.0.1:0): one test binary, a module per area.

mod metrics;
mod outbox;
mod revocation;
mod status;
mod telemetry;
mod tls;
