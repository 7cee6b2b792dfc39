//! Shutdown as a type: one [`Shutdown`] handle is cloned into every listener and
//! long-lived stream. Triggering it stops the accept loops; streams watch it to
//! end cleanly; the [`TaskTracker`] lets `run` wait for in-flight work up to the
//! grace deadline (mini-redis `Shutdown`, pingora `ShutdownWatch`).

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cloneable shutdown signal plus a tracker of in-flight connection tasks.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A fresh, untriggered signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: listeners stop accepting, streams end.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// True once triggered.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when the shutdown is triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// An owned future completing on trigger (for `'static` bodies).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Tracker of connection tasks, waited for during the grace period.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }
}
