//! Notification's API tests, one test binary: notification through its gRPC interface with
//! the real identity, contact registry and access management beside it on one Postgres
//! database and a real SMTP server: every RPC, who is told what in which language (R1, C4,
//! C9, N1, N2), identity's mails, escaping, delivery under faults (N3) and the real binaries
//! as child processes. One module per area; [`helpers`] is the harness they share.

pub mod helpers;

mod api;
mod escaping;
mod event_notices;
mod faults;
mod identity_mails;
mod processes;
mod recipients;
mod support_reminders;
