//! `kc-rights`: the rights model of the keycontacts suite, shared by the services that
//! decide on rights. Pure: values in, decisions out, no I/O.
//!
//! - [`levels`]: tool and support levels (T1, U1–U4).
//! - [`rights`]: contact roles and what they imply (T3, U5), effective rights, permission
//!   checks, the checks on every change of rights (T4, T6, T7, U4–U6), approvers and
//!   approvals (A3, A4), domain policy baselines (A7).
//!
//! Access management decides grants with it; the contact registry decides, in its own
//! write transactions, whether the acting person still holds the authority a change of
//! contacts needs (T6, T8).

#![warn(missing_docs, unreachable_pub)]

pub mod levels;
pub mod rights;
