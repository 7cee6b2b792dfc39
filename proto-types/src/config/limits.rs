//! Per-client limits as configured: a request rate written `"<count>/s|m|h"`
//! ([`Rate`], parsed while deserializing so a bad value is reported with the
//! path of its field), the burst a client may spend at once, the cap on
//! concurrent streams, and what the limiter does when its store (Redis) does
//! not answer ([`OnStoreError`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// What a rate was written as, for error messages.
const RATE_SHAPE: &str = "expected \"<count>/s|m|h\", e.g. \"100/s\"";

/// A sustained request rate: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (at least 1).
    pub count: u32,
    /// The period: one second, minute or hour.
    pub period: Duration,
}

impl Rate {
    /// The time one request "costs" (GCRA's emission interval), in
    /// microseconds; at least 1.
    pub fn interval_micros(&self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        (period / u64::from(self.count.max(1))).max(1)
    }

    /// Requests per second, rounded down (the default burst, at least 1).
    pub fn per_second(&self) -> u32 {
        let secs = self.period.as_secs().max(1);
        u32::try_from(u64::from(self.count) / secs)
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (count, unit) = s.trim().split_once('/').ok_or(RATE_SHAPE)?;
        let count: u32 = count.trim().parse().map_err(|_| RATE_SHAPE)?;
        if count == 0 {
            return Err("the count must be at least 1".into());
        }
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(RATE_SHAPE.into()),
        };
        Ok(Rate { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            60 => "m",
            3600 => "h",
            _ => "s",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `limits.on_store_error`: the answer to a limited client while Redis is
/// unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Serve the request unlimited (the default: an outage of the limiter's
    /// store does not become an outage of the proxy).
    #[default]
    Open,
    /// Refuse it: 503 `state_store_unavailable` with `Retry-After`.
    Closed,
}

impl OnStoreError {
    /// The metric label of the outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStoreError::Open => "open",
            OnStoreError::Closed => "closed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_period() {
        let r: Rate = "100/s".parse().expect("rate");
        assert_eq!((r.count, r.period), (100, Duration::from_secs(1)));
        assert_eq!(r.interval_micros(), 10_000);
        assert_eq!(r.per_second(), 100);
        let r: Rate = "6000/m".parse().expect("rate");
        assert_eq!(r.interval_micros(), 10_000);
        assert_eq!(r.per_second(), 100);
        let r: Rate = " 10 / h ".parse().expect("rate");
        assert_eq!(r.per_second(), 1, "the burst default is at least 1");
        assert_eq!(r.to_string(), "10/h");
    }

    #[test]
    fn bad_rates_say_what_is_expected() {
        for bad in ["100", "100/d", "x/s", "-1/s", "/s", "1.5/s"] {
            let e = bad.parse::<Rate>().expect_err(bad);
            assert!(e.contains("<count>/s|m|h"), "{bad}: {e}");
        }
        assert!("0/s".parse::<Rate>().is_err());
    }
}
