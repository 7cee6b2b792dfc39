//! The refresh-ahead tasks of the credentials a node owns, one per
//! credential, started and stopped as ownership moves. Each task runs
//! [`Credential::refresh_ahead`] under its own cancellation token (a child of
//! the node's shutdown), so stepping down stops exactly the refreshes of what
//! was given up and nothing else.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::credentials::Credential;

/// Refresh-ahead tasks by credential name.
#[derive(Debug)]
pub struct Refreshers {
    credentials: HashMap<String, Arc<Credential>>,
    running: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
}

impl Refreshers {
    /// Refreshers for `credentials`, spawned on `tasks`.
    pub fn new(credentials: Vec<Arc<Credential>>, tasks: TaskTracker) -> Self {
        Refreshers {
            credentials: credentials
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            running: Mutex::new(HashMap::new()),
            tasks,
        }
    }

    /// Names of every credential, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.credentials.keys().cloned().collect();
        names.sort();
        names
    }

    /// Starts refreshing `name` ahead of expiry (no-op if running or
    /// unknown); `keep_fresh` refreshes unused tokens too (see
    /// [`Credential::refresh_ahead`]).
    pub fn start(&self, name: &str, keep_fresh: bool, parent: &CancellationToken) {
        let Some(cred) = self.credentials.get(name) else {
            return;
        };
        let mut running = self.running.lock();
        if running.get(name).is_some_and(|t| !t.is_cancelled()) {
            return;
        }
        let stop = parent.child_token();
        running.insert(name.to_string(), stop.clone());
        self.tasks
            .spawn(cred.clone().refresh_ahead(keep_fresh, stop));
    }

    /// Stops refreshing `name`.
    pub fn stop(&self, name: &str) {
        if let Some(t) = self.running.lock().remove(name) {
            t.cancel();
        }
    }

    /// The credential called `name`.
    pub fn credential(&self, name: &str) -> Option<&Arc<Credential>> {
        self.credentials.get(name)
    }

    /// Every credential.
    pub fn credentials(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.credentials.values()
    }

    /// The tracker the refresh tasks run on.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Stops every refresh.
    pub fn stop_all(&self) {
        for (_, t) in self.running.lock().drain() {
            t.cancel();
        }
    }
}
