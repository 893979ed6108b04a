//! The gateway's API tests, one test binary: the public API through the gateway only, with
//! the five real services on one real Postgres (and a real SMTP server): authorization of
//! every RPC, identity you can trust (I1–I3), rights-implying roles and races (T3–T8, C3,
//! C8), revisions, revocation, the read cache, limits, faults, gRPC-Web, notification
//! e-mail, and the whole story with the real binaries. One module per area; [`helpers`] is
//! the harness they share.

pub mod helpers;

mod add_site_user;
mod admissions;
mod authority_race;
mod authorization;
mod authorization_service;
mod blocking;
mod cache;
mod compliance_portfolio;
mod escalation_matrix;
mod faults;
mod grant_ends;
mod grpc_web;
mod identity_trust;
mod import_contacts;
mod limits;
mod notification_email;
mod operator_rpcs;
mod primary_recovery;
mod revisions;
mod revocation;
mod role_authority;
mod roles_imply;
mod scopes;
mod self_nomination_signal;
mod show_all_contacts_paging;
mod story;
mod support_users;
mod tls;
mod traces;
mod transfer_race;
mod watch_permissions;
