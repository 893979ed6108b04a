//! The `kc-gateway` binary: serves the public API (it has no database, so no `migrate`).

fn main() {
    kc_runtime::bootstrap::Binary::new(
        &kc_gateway::SERVICE,
        "keycontacts gateway: the one public gRPC API, which authenticates, authorizes and \
         composes identity, the contact registry, access management and notification.",
    )
    .main(kc_gateway::run);
}
