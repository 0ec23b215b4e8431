//! Lamport clocks (Serf `lamport.go`): Serf orders member intents, user events and queries
//! by three of them. A clock moves past every time it witnesses, so a message created after
//! seeing another always carries a later time.

/// A Lamport clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LamportClock(u64);

impl LamportClock {
    /// A clock at `t` (Serf starts its clocks at 1: `New` increments each once).
    pub fn new(t: u64) -> Self {
        LamportClock(t)
    }

    /// The current time (Serf `Time`).
    pub fn time(&self) -> u64 {
        self.0
    }

    /// Moves on by one and returns the new time (Serf `Increment`).
    pub fn increment(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }

    /// Seen time `v`: the clock moves past it (Serf `Witness`: to `v + 1` when `v` is not
    /// older than the clock).
    pub fn witness(&mut self, v: u64) {
        if v >= self.0 {
            self.0 = v + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lamport_witness_moves_past_the_seen_value() {
        let mut c = LamportClock::new(1);
        c.witness(5);
        assert_eq!(c.time(), 6);
        c.witness(5);
        assert_eq!(c.time(), 6, "an older time leaves the clock");
        c.witness(6);
        assert_eq!(c.time(), 7, "the same time moves it on");
    }

    #[test]
    fn increment_returns_the_new_time_like_serfs() {
        // Serf TestLamportClock: Time 0, Increment → 1, Witness(41) → 42, Witness(41) → 42,
        // Witness(30) → 42.
        let mut c = LamportClock::new(0);
        assert_eq!(c.increment(), 1);
        c.witness(41);
        assert_eq!(c.time(), 42);
        c.witness(41);
        c.witness(30);
        assert_eq!(c.time(), 42);
    }
}
