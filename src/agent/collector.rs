//! The agent's own metric families, encoded from the state the agent already keeps at
//! every scrape: readiness, the gossip member's stats, the SPOE agent's counters. (The
//! HAProxy manager registers its own: [`crate::manager`].)

use std::sync::Arc;

use crate::gossip::Gossip;
use crate::handlers::HandlerCounters;
use crate::manager::Manager;
use crate::metrics::names::{self, Family};
use crate::metrics::{encode_counter, encode_gauge, labels, Collector, DescriptorEncoder, Labels};
use crate::spoe::SpoeMetrics;

/// Encodes the agent-level families.
pub struct AgentCollector {
    /// The gossip member.
    pub gossip: Gossip,
    /// The HAProxy manager, if any (readiness).
    pub manager: Option<Manager>,
    /// The SPOE agent's counters, with `--spoe-bind`.
    pub spoe: Option<Arc<SpoeMetrics>>,
    /// Gossip keys were configured (the stats snapshot may lag at start).
    pub encrypted: bool,
    /// The event handler scripts' counters, with `--event-handler`.
    pub handlers: Option<Arc<HandlerCounters>>,
}

impl std::fmt::Debug for AgentCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentCollector")
    }
}

fn by_label<'a>(
    family: &Family,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Vec<(Labels, u64)> {
    values
        .into_iter()
        .map(|(label, v)| (labels(family, &[label]), v))
        .collect()
}

impl Collector for AgentCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let ready = self.manager.as_ref().is_none_or(Manager::ready);
        encode_gauge(&mut e, &names::READY, &[(Vec::new(), i64::from(ready))])?;
        let s = self.gossip.stats();
        let statuses = ["alive", "leaving", "left", "failed", "suspect"]
            .map(|st| (st, *s.members.get(st).unwrap_or(&0)));
        let members: Vec<(Labels, i64)> = by_label(&names::MEMBERS, statuses)
            .into_iter()
            .map(|(l, v)| (l, v as i64))
            .collect();
        encode_gauge(&mut e, &names::MEMBERS, &members)?;
        encode_counter(
            &mut e,
            &names::GOSSIP_PACKETS,
            &by_label(
                &names::GOSSIP_PACKETS,
                [("in", s.udp_packets_in), ("out", s.udp_packets_out)],
            ),
        )?;
        encode_counter(
            &mut e,
            &names::GOSSIP_STREAMS,
            &by_label(
                &names::GOSSIP_STREAMS,
                [("in", s.tcp_streams_in), ("out", s.tcp_streams_out)],
            ),
        )?;
        encode_counter(
            &mut e,
            &names::GOSSIP_DROPPED,
            &by_label(
                &names::GOSSIP_DROPPED,
                s.dropped.iter().map(|(k, v)| (k.as_str(), *v)),
            ),
        )?;
        encode_gauge(
            &mut e,
            &names::GOSSIP_HEALTH_SCORE,
            &[(Vec::new(), i64::from(s.health_score))],
        )?;
        encode_gauge(
            &mut e,
            &names::GOSSIP_ENCRYPTED,
            &[(Vec::new(), i64::from(self.encrypted || s.encrypted))],
        )?;
        if let Some(spoe) = &self.spoe {
            encode_counter(
                &mut e,
                &names::SPOE_NOTIFIES,
                &[(Vec::new(), SpoeMetrics::get(&spoe.notifies))],
            )?;
            encode_counter(
                &mut e,
                &names::SPOE_TRUNCATED,
                &[(Vec::new(), SpoeMetrics::get(&spoe.truncated))],
            )?;
            encode_counter(
                &mut e,
                &names::SPOE_REJECTED,
                &[(Vec::new(), SpoeMetrics::get(&spoe.rejected))],
            )?;
        }
        if let Some(h) = &self.handlers {
            let get =
                |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            encode_counter(
                &mut e,
                &names::EVENT_HANDLER_RUNS,
                &by_label(
                    &names::EVENT_HANDLER_RUNS,
                    [
                        ("ok", get(&h.ok)),
                        ("failed", get(&h.failed)),
                        ("timeout", get(&h.timed_out)),
                    ],
                ),
            )?;
            encode_counter(
                &mut e,
                &names::EVENT_HANDLER_DROPPED,
                &[(Vec::new(), get(&h.dropped))],
            )?;
            encode_counter(
                &mut e,
                &names::EVENT_HANDLER_RESPONSES_REFUSED,
                &[(Vec::new(), get(&h.responses_refused))],
            )?;
        }
        Ok(())
    }
}
