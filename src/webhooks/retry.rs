//! Retry policy for webhook deliveries: schedule with jitter, `Retry-After`, and the
//! classification of callback responses.
//!
//! Attempt numbering: `attempts_made` counts attempts already made. The delay before
//! attempt `n` (0-based) is `schedule[n]` (the last entry repeats if the schedule is
//! shorter than `max_attempts`); attempt 0 is normally immediate.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;

/// Minimum wait after a 429 without a usable `Retry-After`, and the value the delivery
/// code should pass as `retry_after` after a timeout (Svix: `OVERLOAD_PENALTY_SECS`).
pub const OVERLOAD_PENALTY: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first one included. After this many, give up (dead-letter).
    pub max_attempts: u32,
    /// `schedule[n]` = delay before attempt `n`; the last entry repeats.
    pub schedule: Vec<Duration>,
    /// Uniform jitter as a fraction of the scheduled delay (0.2 = ±20%), clamped to 0..=1.
    pub jitter: f64,
    /// Largest `Retry-After` that is honoured; longer values are clamped to this.
    pub retry_after_cap: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Default for RetryPolicy {
    /// Svix schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
    /// (8 attempts over about 27.5 h), ±20% jitter, `Retry-After` honoured up to 1 h.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            schedule: vec![
                secs(0),
                secs(5),
                secs(5 * 60),
                secs(30 * 60),
                secs(2 * 3600),
                secs(5 * 3600),
                secs(10 * 3600),
                secs(10 * 3600),
            ],
            jitter: 0.2,
            retry_after_cap: secs(3600),
        }
    }
}

impl RetryPolicy {
    /// For tests: `max_attempts` attempts, the first immediate and the others `step`
    /// apart, no jitter, and `Retry-After` (and the 429 penalty) clamped to `step`.
    pub fn fast_for_tests(max_attempts: u32, step: Duration) -> Self {
        Self {
            max_attempts,
            schedule: vec![Duration::ZERO, step],
            jitter: 0.0,
            retry_after_cap: step,
        }
    }

    /// How long to wait before the next attempt, given `attempts_made` attempts so far
    /// and the `Retry-After` of the last response (if any). `None` = give up.
    ///
    /// The result is `max(jittered schedule[attempts_made], min(retry_after, cap))`: a
    /// `Retry-After` can lengthen the wait (up to the cap) but never shorten it, and it is
    /// itself never cut by jitter.
    pub fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let sample = rand::rng().random_range(-1.0..=1.0);
        self.delay_with_sample(attempts_made, retry_after, sample)
    }

    /// `next_delay` with the random draw given: `sample` in -1.0..=1.0.
    fn delay_with_sample(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        sample: f64,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let scheduled = self
            .schedule
            .get(attempts_made as usize)
            .or(self.schedule.last())
            .copied()
            .unwrap_or(Duration::ZERO);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let factor = (1.0 + jitter * sample.clamp(-1.0, 1.0)).max(0.0);
        let jittered =
            Duration::try_from_secs_f64(scheduled.as_secs_f64() * factor).unwrap_or(scheduled);
        let honoured = retry_after.map_or(Duration::ZERO, |ra| ra.min(self.retry_after_cap));
        Some(jittered.max(honoured))
    }
}

/// What to do after a response from the callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 408, 429, 5xx: try again (subject to the policy).
    Retry { retry_after: Option<Duration> },
    /// 404, 410: the flow or subscription is gone; stop delivering to it.
    SubscriptionGone,
    /// Any other status (other 4xx, 1xx, 3xx): this message failed for good.
    PermanentFailure,
}

/// Classifies an HTTP status. Redirects are not followed, so 3xx is a permanent failure.
/// For a retryable status the `Retry-After` header is parsed; a 429 without a usable one
/// gets [`OVERLOAD_PENALTY`].
pub fn classify_status(status: u16, retry_after_header: Option<&str>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        404 | 410 => Outcome::SubscriptionGone,
        408 | 429 | 500..=599 => {
            let parsed = retry_after_header.and_then(|v| parse_retry_after(v, Utc::now()));
            let retry_after = match (status, parsed) {
                (429, None) => Some(OVERLOAD_PENALTY),
                (_, parsed) => parsed,
            };
            Outcome::Retry { retry_after }
        }
        _ => Outcome::PermanentFailure,
    }
}

/// Parses `Retry-After`: delta-seconds (`120`) or an HTTP-date in any of the three forms
/// of RFC 9110 (IMF-fixdate, obsolete RFC 850, asctime). A date in the past gives zero.
/// Anything else gives `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long values; the policy's cap applies anyway.
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = parse_http_date(value)?;
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// The three forms of RFC 9110 (IMF-fixdate, obsolete RFC 850, asctime).
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    httpdate::parse_http_date(value)
        .ok()
        .map(DateTime::<Utc>::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn default_schedule_is_svix_like() {
        let p = no_jitter();
        let delays: Vec<Duration> = (0..p.max_attempts)
            .map(|n| p.next_delay(n, None).unwrap())
            .collect();
        assert_eq!(
            delays,
            [
                S(0),
                S(5),
                S(300),
                S(1800),
                S(7200),
                S(18000),
                S(36000),
                S(36000)
            ]
        );
        let total: Duration = delays.iter().sum();
        assert_eq!(total, S(99_305)); // ≈ 27.6 h
        assert_eq!(RetryPolicy::default().jitter, 0.2);
    }

    #[test]
    fn gives_up_exactly_after_max_attempts() {
        let p = RetryPolicy::default();
        assert!(p.next_delay(7, None).is_some());
        assert_eq!(p.next_delay(8, None), None);
        assert_eq!(p.next_delay(9, Some(S(1))), None);
        assert_eq!(p.next_delay(u32::MAX, None), None);

        let one = RetryPolicy::fast_for_tests(1, Duration::from_millis(10));
        assert_eq!(one.next_delay(0, None), Some(Duration::ZERO));
        assert_eq!(one.next_delay(1, None), None);

        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.next_delay(0, None), None);
    }

    #[test]
    fn short_schedule_repeats_last_entry_and_empty_means_zero() {
        let p = RetryPolicy {
            max_attempts: 5,
            schedule: vec![S(0), S(2)],
            jitter: 0.0,
            retry_after_cap: S(10),
        };
        assert_eq!(p.next_delay(4, None), Some(S(2)));
        let empty = RetryPolicy {
            schedule: vec![],
            ..p
        };
        assert_eq!(empty.next_delay(3, None), Some(Duration::ZERO));
    }

    #[test]
    fn fast_for_tests_policy() {
        let step = Duration::from_millis(20);
        let p = RetryPolicy::fast_for_tests(3, step);
        assert_eq!(p.next_delay(0, None), Some(Duration::ZERO));
        assert_eq!(p.next_delay(1, None), Some(step));
        assert_eq!(p.next_delay(2, None), Some(step));
        assert_eq!(p.next_delay(3, None), None);
        // A 429 penalty or a long Retry-After does not slow tests down.
        assert_eq!(p.next_delay(1, Some(OVERLOAD_PENALTY)), Some(step));
    }

    #[test]
    fn jitter_bounds_at_extremes() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with_sample(3, None, -1.0), Some(S(1440)));
        assert_eq!(p.delay_with_sample(3, None, 1.0), Some(S(2160)));
        assert_eq!(p.delay_with_sample(3, None, 0.0), Some(S(1800)));
        assert_eq!(p.delay_with_sample(0, None, 1.0), Some(Duration::ZERO));
        // Full jitter never goes negative; silly values are clamped.
        let full = RetryPolicy {
            jitter: 1.0,
            ..RetryPolicy::default()
        };
        assert_eq!(full.delay_with_sample(1, None, -1.0), Some(Duration::ZERO));
        assert_eq!(full.delay_with_sample(1, None, 1.0), Some(S(10)));
        for jitter in [5.0, -3.0, f64::NAN, f64::INFINITY] {
            let odd = RetryPolicy {
                jitter,
                ..RetryPolicy::default()
            };
            for _ in 0..200 {
                let d = odd.next_delay(2, None).unwrap();
                assert!(d <= S(600), "jitter {jitter}: {d:?}");
            }
        }
    }

    #[test]
    fn random_jitter_stays_in_bounds_and_varies() {
        let p = RetryPolicy::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let d = p.next_delay(2, None).unwrap();
            assert!(d >= S(240) && d <= S(360), "{d:?}");
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 100, "jitter looks constant");
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens() {
        let p = no_jitter();
        // Larger than the schedule: honoured.
        assert_eq!(p.next_delay(1, Some(S(120))), Some(S(120)));
        // Larger than the cap: clamped to the cap.
        assert_eq!(p.next_delay(1, Some(S(86_400))), Some(S(3600)));
        assert_eq!(p.next_delay(1, Some(Duration::MAX)), Some(S(3600)));
        // Smaller than the schedule: the schedule wins.
        assert_eq!(p.next_delay(3, Some(S(10))), Some(S(1800)));
        assert_eq!(p.next_delay(5, Some(S(86_400))), Some(S(18_000)));
        // Jitter never cuts an honoured Retry-After.
        let jittery = RetryPolicy::default();
        assert_eq!(
            jittery.delay_with_sample(1, Some(S(120)), 1.0),
            Some(S(120))
        );
        // Give-up still wins over Retry-After.
        assert_eq!(p.next_delay(8, Some(S(1))), None);
    }

    #[test]
    fn classification_table() {
        let table: &[(u16, Outcome)] = &[
            (200, Outcome::Delivered),
            (201, Outcome::Delivered),
            (202, Outcome::Delivered),
            (204, Outcome::Delivered),
            (299, Outcome::Delivered),
            (100, Outcome::PermanentFailure),
            (101, Outcome::PermanentFailure),
            (301, Outcome::PermanentFailure),
            (302, Outcome::PermanentFailure),
            (304, Outcome::PermanentFailure),
            (307, Outcome::PermanentFailure),
            (308, Outcome::PermanentFailure),
            (400, Outcome::PermanentFailure),
            (401, Outcome::PermanentFailure),
            (403, Outcome::PermanentFailure),
            (404, Outcome::SubscriptionGone),
            (405, Outcome::PermanentFailure),
            (408, Outcome::Retry { retry_after: None }),
            (409, Outcome::PermanentFailure),
            (410, Outcome::SubscriptionGone),
            (413, Outcome::PermanentFailure),
            (422, Outcome::PermanentFailure),
            (
                429,
                Outcome::Retry {
                    retry_after: Some(OVERLOAD_PENALTY),
                },
            ),
            (499, Outcome::PermanentFailure),
            (500, Outcome::Retry { retry_after: None }),
            (502, Outcome::Retry { retry_after: None }),
            (503, Outcome::Retry { retry_after: None }),
            (504, Outcome::Retry { retry_after: None }),
            (599, Outcome::Retry { retry_after: None }),
            (600, Outcome::PermanentFailure),
            (0, Outcome::PermanentFailure),
        ];
        for (status, want) in table {
            assert_eq!(classify_status(*status, None), *want, "status {status}");
        }
    }

    #[test]
    fn classification_reads_retry_after() {
        assert_eq!(
            classify_status(503, Some("120")),
            Outcome::Retry {
                retry_after: Some(S(120))
            }
        );
        assert_eq!(
            classify_status(429, Some("7")),
            Outcome::Retry {
                retry_after: Some(S(7))
            }
        );
        assert_eq!(
            classify_status(429, Some("soon")),
            Outcome::Retry {
                retry_after: Some(OVERLOAD_PENALTY)
            }
        );
        assert_eq!(
            classify_status(500, Some("soon")),
            Outcome::Retry { retry_after: None }
        );
        // Ignored where no retry happens.
        assert_eq!(classify_status(200, Some("120")), Outcome::Delivered);
        assert_eq!(classify_status(410, Some("120")), Outcome::SubscriptionGone);
        // HTTP-date form, relative to the real clock.
        let later = (Utc::now() + chrono::Duration::seconds(300))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        match classify_status(503, Some(&later)) {
            Outcome::Retry {
                retry_after: Some(d),
            } => {
                assert!(d > S(290) && d <= S(300), "{d:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_seconds() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("0", now), Some(S(0)));
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(parse_retry_after("  30 ", now), Some(S(30)));
        assert_eq!(parse_retry_after("007", now), Some(S(7)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(S(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_dates() {
        let now = Utc.with_ymd_and_hms(1994, 11, 6, 8, 47, 37).unwrap();
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after(form, now), Some(S(120)), "{form}");
        }
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 12:10:00 GMT", now),
            Some(S(600))
        );
        // In the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage() {
        let now = Utc::now();
        for bad in [
            "",
            "   ",
            "-5",
            "+5",
            "1.5",
            "1e3",
            "12 seconds",
            "soon",
            "0x10",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "2026-03-01T12:00:00Z",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
