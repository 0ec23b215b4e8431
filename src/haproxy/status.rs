//! HAProxy's `status` column (`show stat`), parsed into an enum.

use std::fmt;

/// The health part of a transitional status such as `UP 1/3` or `DOWN 1/2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// `UP`.
    Up,
    /// `DOWN`.
    Down,
    /// `DRAIN` (up, drain flag set).
    Drain,
    /// `NOLB` (operational state "stopping").
    Nolb,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Health::Up => "UP",
            Health::Down => "DOWN",
            Health::Drain => "DRAIN",
            Health::Nolb => "NOLB",
        }
    }
}

/// A parsed `status` value (server, backend or frontend row).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerStatus {
    /// `UP`, `DOWN`, `DRAIN` or `NOLB` with no transition counter.
    Stable(Health),
    /// `UP x/y`, `DOWN x/y`, `DRAIN x/y`, `NOLB x/y`: a check transition in progress.
    Transition {
        /// The current state.
        health: Health,
        /// Checks done towards the next state.
        step: u32,
        /// Checks needed.
        of: u32,
    },
    /// `DOWN (agent)` / `DRAIN (agent)` etc.: decided by the agent check.
    Agent(Health),
    /// `MAINT`: forced or configured maintenance.
    Maint,
    /// `MAINT (resolution)`: address-resolution maintenance.
    MaintResolution,
    /// `MAINT (via b/s)`: maintenance inherited from a tracked server.
    MaintVia(String),
    /// `no check`: no health check, always considered up.
    NoCheck,
    /// `OPEN` (frontends).
    Open,
    /// `STOP` (frontends).
    Stop,
    /// Anything else (kept verbatim, never an error: newer versions may add strings).
    Other(String),
}

impl ServerStatus {
    /// Parses a status string; never fails (unknown strings become [`ServerStatus::Other`]).
    pub fn parse(s: &str) -> ServerStatus {
        let s = s.trim();
        match s {
            "UP" => return ServerStatus::Stable(Health::Up),
            "DOWN" => return ServerStatus::Stable(Health::Down),
            "DRAIN" => return ServerStatus::Stable(Health::Drain),
            "NOLB" => return ServerStatus::Stable(Health::Nolb),
            "MAINT" => return ServerStatus::Maint,
            "MAINT (resolution)" => return ServerStatus::MaintResolution,
            "no check" => return ServerStatus::NoCheck,
            "OPEN" => return ServerStatus::Open,
            "STOP" => return ServerStatus::Stop,
            _ => {}
        }
        if let Some(via) = s
            .strip_prefix("MAINT (via ")
            .and_then(|r| r.strip_suffix(')'))
        {
            return ServerStatus::MaintVia(via.to_string());
        }
        if let Some((head, tail)) = s.split_once(' ') {
            let health = match head {
                "UP" => Some(Health::Up),
                "DOWN" => Some(Health::Down),
                "DRAIN" => Some(Health::Drain),
                "NOLB" => Some(Health::Nolb),
                _ => None,
            };
            if let Some(health) = health {
                if tail == "(agent)" {
                    return ServerStatus::Agent(health);
                }
                if let Some((a, b)) = tail.split_once('/') {
                    if let (Ok(step), Ok(of)) = (a.parse(), b.parse()) {
                        return ServerStatus::Transition { health, step, of };
                    }
                }
            }
        }
        ServerStatus::Other(s.to_string())
    }

    /// True when HAProxy may send new load-balanced traffic to the server.
    pub fn takes_traffic(&self) -> bool {
        matches!(
            self,
            ServerStatus::Stable(Health::Up)
                | ServerStatus::Transition {
                    health: Health::Up,
                    ..
                }
                | ServerStatus::NoCheck
        )
    }

    /// True for every maintenance form.
    pub fn is_maint(&self) -> bool {
        matches!(
            self,
            ServerStatus::Maint | ServerStatus::MaintResolution | ServerStatus::MaintVia(_)
        )
    }
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerStatus::Stable(h) => f.write_str(h.as_str()),
            ServerStatus::Transition { health, step, of } => {
                write!(f, "{} {step}/{of}", health.as_str())
            }
            ServerStatus::Agent(h) => write!(f, "{} (agent)", h.as_str()),
            ServerStatus::Maint => f.write_str("MAINT"),
            ServerStatus::MaintResolution => f.write_str("MAINT (resolution)"),
            ServerStatus::MaintVia(v) => write!(f, "MAINT (via {v})"),
            ServerStatus::NoCheck => f.write_str("no check"),
            ServerStatus::Open => f.write_str("OPEN"),
            ServerStatus::Stop => f.write_str("STOP"),
            ServerStatus::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_string_parses_and_prints_back() {
        for s in [
            "UP",
            "DOWN",
            "DRAIN",
            "NOLB",
            "UP 1/3",
            "DOWN 1/2",
            "DRAIN 1/2",
            "NOLB 1/2",
            "DOWN (agent)",
            "DRAIN (agent)",
            "MAINT",
            "MAINT (resolution)",
            "MAINT (via web/web1)",
            "no check",
            "OPEN",
            "STOP",
        ] {
            let p = ServerStatus::parse(s);
            assert!(!matches!(p, ServerStatus::Other(_)), "{s} -> {p:?}");
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(
            ServerStatus::parse("UP 1/3"),
            ServerStatus::Transition {
                health: Health::Up,
                step: 1,
                of: 3
            }
        );
        assert_eq!(
            ServerStatus::parse("MAINT (via a/b)"),
            ServerStatus::MaintVia("a/b".into())
        );
    }

    #[test]
    fn an_unknown_status_string_is_kept_verbatim() {
        assert_eq!(
            ServerStatus::parse("WEIRD 9"),
            ServerStatus::Other("WEIRD 9".into())
        );
    }
}
