//! The contact registry's API tests, one test binary: the registry through its gRPC interface
//! against a real Postgres, every RPC and every rule of DOMAIN.md it enforces (S*, C*, R1, L1,
//! T6, T8), validation, callers, races and the cross-process tests. One module per area;
//! [`helpers`] is the harness they share.

mod helpers;

mod audit;
mod authority_at_commit;
mod callers;
mod compliance;
mod consumer_process;
mod contacts;
mod events;
mod grpcurl;
mod listings;
mod notification_email;
mod races;
mod recipients;
mod sites;
mod transfer_authority;
mod transfers;
