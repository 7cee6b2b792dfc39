//! The generic cell rate algorithm (GCRA), as pure arithmetic on
//! microseconds. One value per client, its *theoretical arrival time* (TAT):
//! each admitted request pushes it one emission interval `T` (the period
//! divided by the count) later; a request is admitted while the TAT lies at
//! most `burst × T` ahead of now. The in-memory limiter runs this function;
//! the Redis script (`store.rs`) is the same arithmetic in Lua, on Redis's
//! clock, so both backends decide alike.

/// What the limiter answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Admitted.
    pub allowed: bool,
    /// Requests still admissible right now (after this one, when admitted).
    pub remaining: u64,
    /// Microseconds until the next request is admitted (refused), or until
    /// the whole burst is available again (admitted).
    pub wait_micros: u64,
}

/// Decides one request at `now` against the stored `tat`; returns the
/// decision and the TAT to store (unchanged when refused).
pub fn decide(now: u64, tat: u64, interval: u64, burst: u64) -> (Decision, u64) {
    let tat = tat.max(now);
    let new_tat = tat.saturating_add(interval);
    // How far ahead of now the client would be, against how far it may be.
    let ahead = new_tat - now;
    let limit = burst.saturating_mul(interval);
    if ahead > limit {
        let decision = Decision {
            allowed: false,
            remaining: 0,
            wait_micros: ahead - limit,
        };
        return (decision, tat);
    }
    let decision = Decision {
        allowed: true,
        remaining: (limit - ahead) / interval.max(1),
        wait_micros: ahead,
    };
    (decision, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admitted requests when `demand` requests arrive evenly over `secs`.
    fn admitted(rate_interval: u64, burst: u64, demand: u64, secs: u64) -> u64 {
        let mut tat = 0;
        let mut n = 0;
        let step = secs * 1_000_000 / demand;
        for i in 0..demand {
            let (d, next) = decide(1_000_000 + i * step, tat, rate_interval, burst);
            tat = next;
            n += u64::from(d.allowed);
        }
        n
    }

    #[test]
    fn an_idle_client_gets_its_burst_then_the_rate() {
        let (interval, burst) = (20_000, 5); // 50/s, burst 5
        let mut tat = 0;
        let now = 1_000_000;
        for i in 0..5 {
            let (d, next) = decide(now, tat, interval, burst);
            assert!(d.allowed, "burst request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = next;
        }
        let (d, _) = decide(now, tat, interval, burst);
        assert!(!d.allowed);
        assert_eq!(d.wait_micros, 20_000, "one interval until the next");
        let (d, _) = decide(now + 20_000, tat, interval, burst);
        assert!(d.allowed, "one more per interval");
    }

    #[test]
    fn sustained_overload_is_held_to_the_rate_plus_the_burst() {
        // 50/s, burst 50, 400 requests/s for 10 s: 500 + 50.
        let n = admitted(20_000, 50, 4000, 10);
        assert!((549..=551).contains(&n), "{n}");
        // Under the rate, everything passes.
        assert_eq!(admitted(20_000, 1, 400, 10), 400);
    }
}
