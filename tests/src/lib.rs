//! The sandbox of keycontacts' cross-service tests: any set of the suite's services
//! (identity, the contact registry, access management, notification, the gateway) served
//! in-process on ONE throwaway Postgres database, each in its own schema, on listeners bound
//! to `127.0.0.1:0` before they serve, with an SMTP server for notification's mail; and the
//! fixtures and assertions the tests share.
//!
//! ```no_run
//! # async fn example() {
//! use kc_suite_tests::{Sandbox, Service};
//! let sandbox = Sandbox::builder()
//!     .with(Service::Contacts)
//!     .with(Service::Access)
//!     .start()
//!     .await;
//! let operator = sandbox.operator.token.clone();
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod fixtures;
pub mod sandbox;

pub use fixtures::{FAST_HASHING, NO_DRAIN, OPERATOR_EMAIL, PASSWORD, PATIENT_DEADLINE, Person};
pub use sandbox::{Sandbox, SandboxBuilder, Service};

/// Makes a test area's suite, a struct with a `sandbox: Sandbox` field, dereference to its
/// sandbox (`Deref` and `DerefMut`), so that the sandbox's clients and fixtures are the
/// suite's.
#[macro_export]
macro_rules! on_sandbox {
    ($suite:ty) => {
        impl ::std::ops::Deref for $suite {
            type Target = $crate::Sandbox;

            fn deref(&self) -> &$crate::Sandbox {
                &self.sandbox
            }
        }

        impl ::std::ops::DerefMut for $suite {
            fn deref_mut(&mut self) -> &mut $crate::Sandbox {
                &mut self.sandbox
            }
        }
    };
}
