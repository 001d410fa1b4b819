//! Graceful shutdown: the first SIGINT or SIGTERM starts a drain, the second
//! exits at once.

use tokio::sync::watch;

/// A signal that shutdown has begun; clone it into every server.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown has begun.
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|begun| *begun).await;
    }
}

/// Listens for SIGINT and SIGTERM. Must be called inside a tokio runtime.
pub(crate) fn on_signals() -> Shutdown {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        let mut next = async || {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        };
        next().await;
        eprintln!("shutting down: finishing requests in flight (signal again to exit now)");
        let _ = tx.send(true);
        next().await;
        eprintln!("exiting now");
        std::process::exit(130);
    });
    Shutdown(rx)
}
