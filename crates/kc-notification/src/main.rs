//! The `kc-notification` binary: serves by default; `migrate` runs the migrations and exits.

fn main() {
    kc_runtime::bootstrap::Binary::new(
        &kc_notification::SERVICE,
        "keycontacts notification: who must be told what, in their language, delivered \
         reliably by e-mail.",
    )
    .serve_about(
        "Serve gRPC, follow the event streams and deliver mail (the default when no command \
         is given).",
    )
    .args_override_self()
    .main(kc_notification::run);
}
