use tokio_util::sync::CancellationToken;

/// The process-wide shutdown signal: cancelled on SIGINT or SIGTERM (or by
/// [`Shutdown::trigger`]). Servers and background loops select on [`Shutdown::wait`].
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Installs the SIGINT/SIGTERM handlers; the first signal triggers the shutdown. Call once,
    /// from the binary, inside the tokio runtime.
    pub fn listen_for_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("installing the SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => tracing::info!("caught SIGINT, shutting down"),
                    _ = term.recv() => tracing::info!("caught SIGTERM, shutting down"),
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
                tracing::info!("caught interrupt, shutting down");
            }
            token.cancel();
        });
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the shutdown is triggered.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// The underlying token, for APIs that take one.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}
