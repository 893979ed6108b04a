//! The `kc-access` binary: serves by default; `migrate` runs the migrations and exits.

fn main() {
    kc_runtime::bootstrap::Binary::new(
        &kc_access::SERVICE,
        "keycontacts access management: tool rights, support levels, access requests and \
         authorization checks.",
    )
    .main(kc_access::run);
}
