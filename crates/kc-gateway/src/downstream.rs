//! The internal services the gateway calls, named once for its errors, logs and clients.

use std::fmt;

/// An internal service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    /// Identity: users and sessions.
    Identity,
    /// The contact registry: sites and contacts.
    Contacts,
    /// Access management: rights and requests.
    Access,
    /// Notification: notices and their delivery.
    Notification,
}

impl Svc {
    /// The service's name in logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Svc::Identity => "identity",
            Svc::Contacts => "contact registry",
            Svc::Access => "access management",
            Svc::Notification => "notification",
        }
    }
}

impl fmt::Display for Svc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
