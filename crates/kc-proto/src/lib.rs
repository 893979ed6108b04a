//! Generated protobuf messages, gRPC clients and servers of the keycontacts suite, and the
//! encoded file descriptor set that servers publish through reflection.
#![allow(missing_docs, clippy::all)]

/// Encoded `google.protobuf.FileDescriptorSet` of every keycontacts proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keycontacts_descriptor.bin"));

/// The module of each `keycontacts.<name>.v1` package, at `keycontacts::<name>::v1` (the
/// nesting the generated code's references between packages expect) and re-exported as
/// `<name>`; the doc comment given becomes the `v1` module's.
macro_rules! packages {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        /// Packages under `keycontacts.*`.
        pub mod keycontacts {
            $(
                #[doc = concat!("`keycontacts.", stringify!($name), ".*`")]
                pub mod $name {
                    $(#[$doc])*
                    pub mod v1 {
                        // What `tonic::include_proto!` does, which takes only a literal.
                        include!(concat!(
                            env!("OUT_DIR"),
                            "/keycontacts.",
                            stringify!($name),
                            ".v1.rs"
                        ));
                    }
                }
            )*
        }

        $(pub use keycontacts::$name::v1 as $name;)*
    };
}

packages! {
    /// `keycontacts.access.v1`: tool rights, support levels, access requests and checks.
    access;
    /// `keycontacts.audit.v1`: the audit record the registry and access management share.
    audit;
    /// `keycontacts.contacts.v1`: customers, sites and their key contacts.
    contacts;
    /// `keycontacts.notification.v1`: who is told what, in which language, and delivery.
    notification;
    /// `keycontacts.gateway.v1`: the public API that authenticates, authorizes and
    /// composes the internal services.
    gateway;
    /// `keycontacts.identity.v1`: users, credentials, sessions and signing keys.
    identity;
}
