//! The two latency histograms of the slot pipeline, per backend:
//!
//! - [`names::MEMBER_CHANGE_TO_COMMAND`]: a membership change reaching the agent (a gossip
//!   event) → the runtime command that applies it sent and answered by HAProxy;
//! - [`names::COMMAND_TO_CONFIRM`]: the commands answered → HAProxy's state read back and
//!   found equal to the plan.
//!
//! [`Latency`] is a cheap clone: whoever measures a leg calls `observe_*`.

use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::{labels, names, Labels, MetricsRegistry};

/// Bucket upper bounds, seconds: 1 ms to 10 s, about ×2.5 apart (a change normally reaches
/// HAProxy within milliseconds; seconds mean a stuck socket or a burst).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Handle to the latency histograms; cheap to clone.
#[derive(Clone, Debug)]
pub struct Latency {
    change_to_command: HistogramFamily,
    command_to_confirm: HistogramFamily,
}

impl Latency {
    /// Creates both histograms and registers them.
    pub fn register(registry: &MetricsRegistry) -> Latency {
        let l = Latency::unregistered();
        registry.register(
            &names::MEMBER_CHANGE_TO_COMMAND,
            l.change_to_command.clone(),
        );
        registry.register(&names::COMMAND_TO_CONFIRM, l.command_to_confirm.clone());
        l
    }

    /// Histograms nobody scrapes (tests, tools without an agent).
    pub fn unregistered() -> Latency {
        Latency {
            change_to_command: Family::new_with_constructor(histogram as fn() -> Histogram),
            command_to_confirm: Family::new_with_constructor(histogram as fn() -> Histogram),
        }
    }

    /// Records one "membership change → runtime command answered" time for `backend`.
    pub fn observe_change_to_command(&self, backend: &str, d: Duration) {
        self.change_to_command
            .get_or_create(&labels(&names::MEMBER_CHANGE_TO_COMMAND, &[backend]))
            .observe(d.as_secs_f64());
    }

    /// Records one "commands answered → read back confirms" time for `backend`.
    pub fn observe_command_to_confirm(&self, backend: &str, d: Duration) {
        self.command_to_confirm
            .get_or_create(&labels(&names::COMMAND_TO_CONFIRM, &[backend]))
            .observe(d.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_its_bucket_of_its_backend() {
        let r = MetricsRegistry::new();
        let l = Latency::register(&r);
        l.observe_change_to_command("web", Duration::from_millis(3));
        let text = r.encode();
        assert!(
            text.contains("haserf_member_change_to_command_seconds_count{backend=\"web\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "haserf_member_change_to_command_seconds_bucket{le=\"0.0025\",backend=\"web\"} 0"
            ) || text.contains(
                "haserf_member_change_to_command_seconds_bucket{backend=\"web\",le=\"0.0025\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE haserf_command_to_confirm_seconds histogram"),
            "{text}"
        );
    }
}
