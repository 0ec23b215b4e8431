//! A repeated error logged once, not once per retry: the first occurrence and every change
//! of the message are logged at once; the same message again only after [`REPEAT_EVERY`],
//! with the number of times it happened since; the recovery once.
//!
//! Pure (time passed in), so a retry loop decides what to log without a clock of its own.

use std::time::{Duration, Instant};

/// How often an unchanged error is logged again while it keeps happening.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// What to log for one occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Log it: new, changed, or repeated for [`REPEAT_EVERY`]; `repeated` counts the
    /// occurrences of the previous message that were not logged.
    Log {
        /// Occurrences left unlogged since the last line.
        repeated: u64,
    },
    /// Stay quiet (counted for the next line).
    Quiet,
}

/// The state of one error source (one retry loop).
#[derive(Debug, Default)]
pub struct Repeats {
    last: Option<(String, Instant)>,
    unlogged: u64,
    failures: u64,
}

impl Repeats {
    /// Notes one failure with `message` at `now`.
    pub fn fail(&mut self, message: &str, now: Instant) -> Verdict {
        self.failures += 1;
        match &self.last {
            Some((m, at)) if m == message && now.saturating_duration_since(*at) < REPEAT_EVERY => {
                self.unlogged += 1;
                Verdict::Quiet
            }
            _ => {
                let repeated = std::mem::take(&mut self.unlogged);
                self.last = Some((message.to_string(), now));
                Verdict::Log { repeated }
            }
        }
    }

    /// Notes a success: returns the number of consecutive failures it ends (log "works
    /// again" when this is not zero).
    pub fn ok(&mut self) -> u64 {
        self.last = None;
        self.unlogged = 0;
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_logged_once_a_minute_with_its_count_and_a_new_one_at_once() {
        let t0 = Instant::now();
        let mut r = Repeats::default();
        assert_eq!(r.fail("no socket", t0), Verdict::Log { repeated: 0 });
        for i in 1..60 {
            assert_eq!(
                r.fail("no socket", t0 + Duration::from_secs(i)),
                Verdict::Quiet
            );
        }
        assert_eq!(
            r.fail("no socket", t0 + Duration::from_secs(60)),
            Verdict::Log { repeated: 59 }
        );
        assert_eq!(
            r.fail("permission denied", t0 + Duration::from_secs(61)),
            Verdict::Log { repeated: 0 }
        );
        assert_eq!(r.ok(), 62);
        assert_eq!(r.ok(), 0);
        assert_eq!(
            r.fail("permission denied", t0 + Duration::from_secs(62)),
            Verdict::Log { repeated: 0 },
            "after a success the same error is news again"
        );
    }
}
