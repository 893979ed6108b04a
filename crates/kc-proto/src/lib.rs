//! Generated protobuf messages, gRPC clients and servers of the keycontacts suite, and the
//! encoded file descriptor set that servers publish through reflection.
#![allow(missing_docs, clippy::all)]

/// Encoded `google.protobuf.FileDescriptorSet` of every keycontacts proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keycontacts_descriptor.bin"));

/// Packages under `keycontacts.*`.
pub mod keycontacts {
    /// `keycontacts.access.*`
    pub mod access {
        /// `keycontacts.access.v1`: tool rights, support levels, access requests and checks.
        pub mod v1 {
            tonic::include_proto!("keycontacts.access.v1");
        }
    }
    /// `keycontacts.audit.*`
    pub mod audit {
        /// `keycontacts.audit.v1`: the audit record the registry and access management share.
        pub mod v1 {
            tonic::include_proto!("keycontacts.audit.v1");
        }
    }
    /// `keycontacts.contacts.*`
    pub mod contacts {
        /// `keycontacts.contacts.v1`: customers, sites and their key contacts.
        pub mod v1 {
            tonic::include_proto!("keycontacts.contacts.v1");
        }
    }
    /// `keycontacts.notification.*`
    pub mod notification {
        /// `keycontacts.notification.v1`: who is told what, in which language, and delivery.
        pub mod v1 {
            tonic::include_proto!("keycontacts.notification.v1");
        }
    }
    /// `keycontacts.gateway.*`
    pub mod gateway {
        /// `keycontacts.gateway.v1`: the public API that authenticates, authorizes and
        /// composes the internal services.
        pub mod v1 {
            tonic::include_proto!("keycontacts.gateway.v1");
        }
    }
    /// `keycontacts.identity.*`
    pub mod identity {
        /// `keycontacts.identity.v1`: users, credentials, sessions and signing keys.
        pub mod v1 {
            tonic::include_proto!("keycontacts.identity.v1");
        }
    }
}

pub use keycontacts::access::v1 as access;
pub use keycontacts::audit::v1 as audit;
pub use keycontacts::contacts::v1 as contacts;
pub use keycontacts::gateway::v1 as gateway;
pub use keycontacts::identity::v1 as identity;
pub use keycontacts::notification::v1 as notification;
