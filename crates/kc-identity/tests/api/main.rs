//! The identity service's tests, in one binary with a module per area: its gRPC interface
//! against a real Postgres, its signing keys at rest, and the binary driven by grpcurl.

mod batches;
mod events;
mod grpcurl;
mod helpers;
mod invited;
mod key_encryption;
mod operators;
mod registration;
mod scopes;
mod service_accounts;
mod sessions;
mod sign_in;
mod skeletons;
mod tokens;
mod users;
