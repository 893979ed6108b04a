//! Access management's tests, in one binary with a module per area: its gRPC interface with
//! the real identity and contact registry beside it on one Postgres database (every RPC, and
//! the rules T1–T8, U1–U6, A1–A7, S3, L1, I1), its races, and the self-nomination flow across
//! the real binaries.

mod approvers;
mod audit;
mod blocking_race;
mod callers;
mod checks;
mod domain_policies;
mod escalation;
mod events;
pub mod helpers;
mod profiles;
mod races;
mod requests;
mod revisions;
mod secondary_and_self_grants;
mod self_nomination_process;
mod unproven_and_disabled;
