//! When to renew, and how long to wait after a failed attempt.

use std::time::Duration;

use rand::Rng;

/// Renew a certificate once fewer than this many seconds of validity remain (30 days).
pub const RENEW_BEFORE: i64 = 30 * 24 * 60 * 60;

/// Wait after the first failed attempt (attempt 0), before jitter.
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);

/// Longest wait between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60 * 60);

/// Whether a certificate valid until `not_after_unix` should be renewed at
/// `now_unix` (both unix seconds): when fewer than 30 days remain, including
/// when it has expired.
pub fn needs_renewal(not_after_unix: i64, now_unix: i64) -> bool {
    not_after_unix.saturating_sub(now_unix) < RENEW_BEFORE
}

/// How long to wait before retry number `attempt + 1` after `attempt + 1`
/// failures: 1 minute, doubling each time, capped at 1 hour, minus up to 10%
/// random jitter so that many domains failing together spread out.
///
/// Always within `[0.9 × min(1 min × 2^attempt, 1 h), min(1 min × 2^attempt, 1 h)]`.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    let base = BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP);
    let jitter_ms = u64::try_from(base.as_millis() / 10).unwrap_or(0);
    let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..=jitter_ms));
    base.saturating_sub(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60;

    #[test]
    fn renewal_window() {
        let now = 1_800_000_000;
        assert!(!needs_renewal(now + 90 * DAY, now));
        assert!(!needs_renewal(now + 30 * DAY, now));
        assert!(needs_renewal(now + 30 * DAY - 1, now));
        assert!(needs_renewal(now + DAY, now));
        assert!(needs_renewal(now, now));
        assert!(needs_renewal(now - DAY, now), "expired");
        assert!(needs_renewal(i64::MIN, i64::MAX), "no overflow");
        assert!(!needs_renewal(i64::MAX, i64::MIN), "no overflow");
    }

    #[test]
    fn backoff_bounds() {
        for attempt in [0, 1, 2, 5, 6, 7, 16, 17, 31, 32, u32::MAX] {
            let expected = BACKOFF_BASE
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_CAP);
            for _ in 0..50 {
                let wait = backoff(attempt);
                assert!(wait <= expected, "{attempt}: {wait:?} > {expected:?}");
                assert!(
                    wait >= expected.mul_f64(0.9),
                    "{attempt}: {wait:?} < 0.9 × {expected:?}"
                );
                assert!(wait <= BACKOFF_CAP);
            }
        }
        assert!(backoff(0) >= Duration::from_secs(54));
        assert!(backoff(0) <= Duration::from_secs(60));
        assert!(backoff(3) >= Duration::from_secs(432));
        assert!(backoff(100) >= Duration::from_secs(3240));
    }

    #[test]
    fn backoff_is_exponential_until_the_cap() {
        // Without jitter overlap: 0.9 × 2x > x for all uncapped steps.
        for attempt in 0..5 {
            assert!(backoff(attempt + 1) > backoff(attempt));
        }
        assert!(backoff(6) >= BACKOFF_CAP.mul_f64(0.9), "2^6 min > 1 h");
    }
}
