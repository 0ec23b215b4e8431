//! Lifeguard's local health awareness (memberlist `awareness.go`): a score that rises when
//! this node misses acks or has to refute a suspicion about itself and falls with every ack
//! it gets; probe rounds (and so failure suspicions) slow down by `score + 1` while it is
//! unhealthy, so a struggling node does not accuse healthy ones.

use std::time::Duration;

/// The health score, `0` (healthy) to `max - 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Awareness {
    max: u32,
    score: u32,
}

impl Awareness {
    /// A healthy node; `max` is memberlist's `AwarenessMaxMultiplier`.
    pub fn new(max: u32) -> Self {
        Awareness { max, score: 0 }
    }

    /// Adds `delta` (negative: healthier), clamped to `0..=max-1` (memberlist `ApplyDelta`).
    pub fn apply_delta(&mut self, delta: i32) {
        let max = self.max.saturating_sub(1) as i32;
        self.score = (self.score as i32 + delta).clamp(0, max) as u32;
    }

    /// The current score (memberlist `GetHealthScore`).
    pub fn score(&self) -> u32 {
        self.score
    }

    /// `d × (score + 1)` (memberlist `ScaleTimeout`).
    pub fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_stays_between_zero_and_max_minus_one_like_memberlists() {
        // memberlist TestAwareness: max 8, deltas 0, -1, -10, 1, -1, 10, 7, -8.
        let mut a = Awareness::new(8);
        let steps: [(i32, u32); 9] = [
            (0, 0),
            (-1, 0),
            (-10, 0),
            (1, 1),
            (-1, 0),
            (10, 7),
            (-1, 6),
            (-1, 5),
            (-10, 0),
        ];
        for (delta, score) in steps {
            a.apply_delta(delta);
            assert_eq!(a.score(), score, "after {delta:+}");
        }
    }

    #[test]
    fn timeouts_scale_by_the_score_plus_one() {
        let mut a = Awareness::new(8);
        let s = Duration::from_secs(1);
        assert_eq!(a.scale(s), s, "healthy: unscaled");
        a.apply_delta(3);
        assert_eq!(a.scale(s), Duration::from_secs(4));
        a.apply_delta(100);
        assert_eq!(a.scale(s), Duration::from_secs(8), "capped at max");
    }
}
