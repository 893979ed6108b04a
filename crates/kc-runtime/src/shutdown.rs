//! The shutdown signal every server, stream and background task of a service observes.

use tokio_util::sync::CancellationToken;

/// A cloneable shutdown signal: triggered once, observed by the server and by long-lived
/// streams (which must end so the server can drain).
///
/// A thin wrapper over tokio-util's [`CancellationToken`], so that a [`child`](Self::child)
/// signal (the one background tasks stop on) follows its parent.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal triggered by SIGTERM or SIGINT (Ctrl-C).
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            trigger.trigger();
        });
        shutdown
    }

    /// A signal triggered with this one, or on its own (triggering it leaves this one
    /// alone): what a service's background tasks stop on, so that they stop both on
    /// shutdown and when the server fails.
    pub fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
        }
    }

    /// Triggers the shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the shutdown is triggered.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// Like [`wait`](Self::wait), as a future that owns its clone of the signal (for a
    /// spawned task, e.g. the `shutdown` of [`Consumer::run`](crate::outbox::Consumer::run)).
    pub fn wait_owned(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
