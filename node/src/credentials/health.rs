//! Credential health: consecutive failures (token-endpoint errors and 401s that
//! survive a fresh token) put a credential in cooldown once they reach
//! `failure_threshold`; the cooldown starts at 1 s and doubles with every
//! further failure up to `cooldown_max`. One success clears it. After the
//! cooldown the credential is tried again (half-open): a failure cools it down
//! again for twice as long.
//!
//! A 401 that survives a fresh token only counts when upstream has accepted
//! nothing from this credential for [`PROOF_WINDOW`]: a path that answers 401
//! whatever the token (a resource the credential may not see) must never cool
//! down a credential that works everywhere else.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one accepted request proves a credential healthy.
pub const PROOF_WINDOW: Duration = Duration::from_secs(60);

/// Health of one credential.
#[derive(Debug)]
pub struct Health {
    threshold: u32,
    cooldown_max: Duration,
    /// Set while any failure is recorded: `success` on the hot path is one load.
    failing: AtomicBool,
    /// Milliseconds after `born` of the last accepted request (0: never).
    accepted_ms: AtomicU64,
    born: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    failures: u32,
    cooldown_until: Option<Instant>,
}

impl Health {
    /// A healthy credential with the given policy.
    pub fn new(threshold: u32, cooldown_max: Duration) -> Self {
        Health {
            threshold: threshold.max(1),
            cooldown_max,
            failing: AtomicBool::new(false),
            accepted_ms: AtomicU64::new(0),
            born: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// Records a success: failures and cooldown are cleared. Returns true when
    /// there was something to clear.
    pub fn success(&self) -> bool {
        let now = self.now_ms();
        // One relaxed store per millisecond at most: the hot path stays cheap.
        if self.accepted_ms.load(Ordering::Relaxed) != now {
            self.accepted_ms.store(now, Ordering::Relaxed);
        }
        let was_failing = self.failing.swap(false, Ordering::AcqRel);
        if was_failing {
            *self.state.lock() = State::default();
        }
        was_failing
    }

    /// Records a failure; returns the cooldown it started, if any.
    pub fn failure(&self) -> Option<Duration> {
        let mut s = self.state.lock();
        self.failing.store(true, Ordering::Release);
        s.failures = s.failures.saturating_add(1);
        if s.failures < self.threshold {
            return None;
        }
        let doublings = (s.failures - self.threshold).min(20);
        let cooldown = Duration::from_secs(1u64 << doublings).min(self.cooldown_max);
        s.cooldown_until = Some(Instant::now() + cooldown);
        Some(cooldown)
    }

    /// Records a 401 that a fresh token did not cure: a failure only when
    /// upstream accepted nothing from this credential within [`PROOF_WINDOW`].
    /// Returns the cooldown it started, if any.
    pub fn rejected(&self) -> Option<Duration> {
        let last = self.accepted_ms.load(Ordering::Relaxed);
        let window = u64::try_from(PROOF_WINDOW.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && self.now_ms().saturating_sub(last) < window {
            return None;
        }
        self.failure()
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means "never accepted".
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Time left in cooldown, if cooling down now.
    pub fn cooldown_left(&self) -> Option<Duration> {
        let until = self.state.lock().cooldown_until?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.state.lock().failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_starts_at_threshold_and_doubles_to_the_cap() {
        let h = Health::new(3, Duration::from_secs(5));
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), None);
        assert_eq!(h.failure(), Some(Duration::from_secs(1)));
        assert!(h.cooldown_left().is_some());
        assert_eq!(h.failure(), Some(Duration::from_secs(2)));
        assert_eq!(h.failure(), Some(Duration::from_secs(4)));
        assert_eq!(h.failure(), Some(Duration::from_secs(5)));
        h.success();
        assert_eq!(h.cooldown_left(), None);
        assert_eq!(h.failures(), 0);
    }

    #[test]
    fn rejections_do_not_count_while_upstream_accepts_the_credential() {
        let h = Health::new(1, Duration::from_secs(5));
        assert_eq!(
            h.rejected(),
            Some(Duration::from_secs(1)),
            "never accepted: a 401 after a fresh token counts"
        );
        h.success();
        for _ in 0..10 {
            assert_eq!(h.rejected(), None, "accepted just now: healthy");
        }
        assert_eq!(h.failures(), 0);
    }
}
