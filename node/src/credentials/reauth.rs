//! What a 401 from upstream may cost. A 401 normally means
//! the token was revoked or rotated: invalidate it once (compare-and-set),
//! fetch a fresh one, retry once. But some paths answer 401 whatever the token
//! (a resource this credential may not see), and refreshing for each of them
//! would turn every such request into a token call. So each credential keeps,
//! per node:
//! - the *replacement* version: the token fetched because of a 401; a 401 to
//!   it before upstream ever accepted it is answered as it is;
//! - *sticky paths*: paths that answered 401 to a fresh token; they are not
//!   refreshed for again for [`STICKY_TTL`] (at most [`MAX_STICKY`] remembered);
//! - a *budget* of 401-triggered refreshes: [`BUDGET_BURST`] at once, then one
//!   per [`BUDGET_REFILL`], so many distinct 401 paths stay bounded too.
//!
//! A real rotation is still picked up by one refresh: the first 401 on any
//! other path spends one unit of budget.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a path that answered 401 to a fresh token is not refreshed for.
pub const STICKY_TTL: Duration = Duration::from_secs(300);
/// Sticky paths remembered per credential, at most (oldest forgotten first).
pub const MAX_STICKY: usize = 64;
/// 401-triggered refreshes allowed at once.
pub const BUDGET_BURST: f64 = 3.0;
/// One more 401-triggered refresh is allowed per this interval.
pub const BUDGET_REFILL: Duration = Duration::from_secs(10);

/// The 401 policy state of one credential on this node.
#[derive(Debug)]
pub struct Reauth {
    replacement: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    sticky: VecDeque<(u64, Instant)>,
    budget: f64,
    refilled: Instant,
}

/// Identifies a request path for the sticky set (route and path, no query).
pub fn path_key(route: &str, path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    route.hash(&mut h);
    path.split('?').next().unwrap_or(path).hash(&mut h);
    h.finish()
}

impl Default for Reauth {
    fn default() -> Self {
        Reauth {
            replacement: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                sticky: VecDeque::new(),
                budget: BUDGET_BURST,
                refilled: Instant::now(),
            }),
        }
    }
}

impl Reauth {
    /// True when `version` is the replacement token (fetched after a 401).
    pub fn is_replacement(&self, version: u64) -> bool {
        self.replacement.load(Ordering::Acquire) == version
    }

    /// Remembers `version` as the token fetched to replace a rejected one.
    pub fn set_replacement(&self, version: u64) {
        self.replacement.store(version, Ordering::Release);
    }

    /// True while `path` is known to answer 401 whatever the token.
    pub fn is_sticky(&self, path: u64) -> bool {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        while inner
            .sticky
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) >= STICKY_TTL)
        {
            inner.sticky.pop_front();
        }
        inner.sticky.iter().any(|(k, _)| *k == path)
    }

    /// Records that `path` answered 401 to a fresh token.
    pub fn mark_sticky(&self, path: u64) {
        let mut inner = self.inner.lock();
        inner.sticky.retain(|(k, _)| *k != path);
        if inner.sticky.len() >= MAX_STICKY {
            inner.sticky.pop_front();
        }
        inner.sticky.push_back((path, Instant::now()));
    }

    /// True when the budget allows one more 401-triggered refresh.
    pub fn has_budget(&self) -> bool {
        let mut inner = self.inner.lock();
        inner.refill();
        inner.budget >= 1.0
    }

    /// Spends one unit of budget (after winning the invalidation).
    pub fn spend(&self) {
        let mut inner = self.inner.lock();
        inner.refill();
        inner.budget = (inner.budget - 1.0).max(0.0);
    }
}

impl Inner {
    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() / BUDGET_REFILL.as_secs_f64();
        self.budget = (self.budget + earned).min(BUDGET_BURST);
        self.refilled = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_refills() {
        let r = Reauth::default();
        for _ in 0..3 {
            assert!(r.has_budget());
            r.spend();
        }
        assert!(!r.has_budget(), "burst spent");
    }

    #[test]
    fn sticky_paths_are_bounded_and_ignore_the_query() {
        let r = Reauth::default();
        r.mark_sticky(path_key("a", "/x?q=1"));
        assert!(r.is_sticky(path_key("a", "/x?q=2")));
        assert!(!r.is_sticky(path_key("b", "/x")), "per route");
        for i in 0..MAX_STICKY {
            r.mark_sticky(path_key("a", &format!("/p{i}")));
        }
        assert!(!r.is_sticky(path_key("a", "/x")), "oldest forgotten");
        assert!(r.is_sticky(path_key("a", &format!("/p{}", MAX_STICKY - 1))));
    }
}
