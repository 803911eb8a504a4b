//! Per-connection rate limiting and the origin check.

use super::config::RateLimitConfig;

/// A token bucket in thousandths of a message: refills at
/// `messages_per_sec`, holds at most `burst`. 8 bytes per connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenBucket {
    /// Available tokens, in thousandths.
    milli: u32,
    /// When it was last refilled (milliseconds on the server clock, low 32 bits).
    last_ms: u32,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn full(cfg: &RateLimitConfig, now_ms: u64) -> Self {
        TokenBucket {
            milli: cfg.burst.saturating_mul(1000),
            last_ms: now_ms as u32,
        }
    }

    /// Takes one message's token; false when the bucket is empty.
    pub fn take(&mut self, cfg: &RateLimitConfig, now_ms: u64) -> bool {
        if cfg.messages_per_sec == 0 {
            return true;
        }
        let elapsed = (now_ms as u32).wrapping_sub(self.last_ms);
        self.last_ms = now_ms as u32;
        // messages/s * ms = thousandths of a message.
        let refill = u64::from(elapsed) * u64::from(cfg.messages_per_sec);
        let cap = u64::from(cfg.burst.max(1)) * 1000;
        let milli = (u64::from(self.milli) + refill).min(cap);
        if milli < 1000 {
            self.milli = milli as u32;
            return false;
        }
        self.milli = (milli - 1000) as u32;
        true
    }
}

/// Rate-limited messages within a window, for closing abusers with 4008.
#[derive(Debug, Clone, Copy, Default)]
pub struct Strikes {
    count: u16,
    /// Window start, seconds on the server clock (low 16 bits).
    since_s: u16,
}

impl Strikes {
    /// Counts one strike at `now_ms`; true when the connection has now had
    /// `abuse_strikes` within `abuse_window_secs` and must be closed.
    pub fn strike(&mut self, cfg: &RateLimitConfig, now_ms: u64) -> bool {
        let now_s = (now_ms / 1000) as u16;
        if u32::from(now_s.wrapping_sub(self.since_s)) >= cfg.abuse_window_secs.max(1) {
            self.since_s = now_s;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        cfg.abuse_strikes > 0 && u32::from(self.count) >= cfg.abuse_strikes
    }
}

/// True when `origin` may connect: `allowed` is empty (any origin), the
/// request has no `Origin` (not a browser), or it is in the list (scheme and
/// host compared case-insensitively, a trailing `/` ignored).
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim().trim_end_matches('/');
    allowed.is_empty()
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let cfg = RateLimitConfig {
            messages_per_sec: 10,
            burst: 5,
            ..RateLimitConfig::default()
        };
        let mut b = TokenBucket::full(&cfg, 1_000);
        assert!((0..5).all(|_| b.take(&cfg, 1_000)));
        assert!(!b.take(&cfg, 1_000), "burst used up");
        assert!(!b.take(&cfg, 1_050), "half a token after 50 ms");
        assert!(b.take(&cfg, 1_100), "one token after 100 ms");
        assert!(!b.take(&cfg, 1_100));
        // A long pause refills to the burst, not beyond.
        let n = (0..20).filter(|_| b.take(&cfg, 60_000)).count();
        assert_eq!(n, 5);
    }

    #[test]
    fn strikes_close_within_a_window_and_reset_after_it() {
        let cfg = RateLimitConfig {
            abuse_strikes: 3,
            abuse_window_secs: 10,
            ..RateLimitConfig::default()
        };
        let mut s = Strikes::default();
        assert!(!s.strike(&cfg, 0));
        assert!(!s.strike(&cfg, 1_000));
        assert!(!s.strike(&cfg, 11_000), "a new window");
        assert!(!s.strike(&cfg, 12_000));
        assert!(s.strike(&cfg, 13_000));
    }

    #[test]
    fn origins() {
        let allowed = vec!["https://chat.example.com".to_owned()];
        assert!(origin_allowed(&allowed, None));
        assert!(origin_allowed(&allowed, Some("https://CHAT.example.com/")));
        assert!(!origin_allowed(&allowed, Some("https://evil.example.com")));
        assert!(origin_allowed(&[], Some("https://anything")));
    }
}
