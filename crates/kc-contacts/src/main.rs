//! The `kc-contacts` binary: serves by default; `migrate` runs the migrations and exits.

fn main() {
    kc_runtime::bootstrap::Binary::new(
        &kc_contacts::SERVICE,
        "keycontacts contact registry: customers, sites, contact roles and their rules.",
    )
    .main(kc_contacts::run);
}
