//! The HAProxy manager's metric families, encoded at every scrape from the reconciler's
//! status and the policy's counters (names: [`crate::metrics::names`]).

use super::{lock, Manager};
use crate::control::model::{SlotState, SlotView};
use crate::maps::MapStatus;
use crate::metrics::names::{self, Family};
use crate::metrics::{encode_counter, encode_gauge, labels, Collector, DescriptorEncoder, Labels};

/// Encodes the manager's families.
pub struct ManagerCollector(pub Manager);

impl std::fmt::Debug for ManagerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManagerCollector")
    }
}

impl Collector for ManagerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let inner = &self.0.inner;
        let st = self.0.reconciler_status();
        let mut by_state = Vec::new();
        let mut used = Vec::new();
        let mut free = Vec::new();
        let mut queued = Vec::new();
        for b in &inner.backends {
            let slots: Vec<&SlotView> = st.slots.iter().filter(|s| &s.backend == b).collect();
            for (state, name) in [
                (SlotState::Ready, "ready"),
                (SlotState::Drain, "drain"),
                (SlotState::Maint, "maint"),
            ] {
                let n = slots.iter().filter(|s| s.state == state).count();
                by_state.push((labels(&names::SLOTS, &[b, name]), n as i64));
            }
            let u = slots.iter().filter(|s| s.member.is_some()).count();
            used.push((labels(&names::SLOTS_USED, &[b]), u as i64));
            free.push((labels(&names::SLOTS_FREE, &[b]), (slots.len() - u) as i64));
            let q = st.queue.get(b).map_or(0, Vec::len);
            queued.push((labels(&names::QUEUE_LENGTH, &[b]), q as i64));
        }
        encode_gauge(&mut e, &names::SLOTS, &by_state)?;
        encode_gauge(&mut e, &names::SLOTS_USED, &used)?;
        encode_gauge(&mut e, &names::SLOTS_FREE, &free)?;
        encode_gauge(&mut e, &names::QUEUE_LENGTH, &queued)?;
        let one = |v: u64| -> [(Labels, u64); 1] { [(Vec::new(), v)] };
        encode_counter(&mut e, &names::APPLIES, &one(st.applies))?;
        encode_counter(&mut e, &names::APPLY_ERRORS, &one(st.apply_errors))?;
        let mut backend_errors = Vec::new();
        let mut refused = Vec::new();
        for b in &inner.backends {
            let n = i64::from(st.backend_errors.contains_key(b));
            backend_errors.push((labels(&names::BACKEND_ERRORS, &[b]), n));
            let r = st
                .refused_commands
                .iter()
                .filter(|r| &r.backend == b)
                .count();
            refused.push((labels(&names::REFUSED_COMMANDS, &[b]), r as i64));
        }
        encode_gauge(&mut e, &names::BACKEND_ERRORS, &backend_errors)?;
        encode_gauge(&mut e, &names::REFUSED_COMMANDS, &refused)?;
        encode_counter(&mut e, &names::DRIFT_REPAIRS, &one(st.drift_repairs))?;
        encode_counter(&mut e, &names::HAPROXY_RESTARTS, &one(st.haproxy_restarts))?;
        let shared = lock(&inner.shared);
        encode_counter(
            &mut e,
            &names::SUSPICION_DRAINS,
            &one(shared.suspicion_drains),
        )?;
        encode_counter(&mut e, &names::EVALUATIONS, &one(shared.evaluations))?;
        encode_gauge(
            &mut e,
            &names::REFUSED_MEMBERS,
            &[(Vec::new(), shared.refusals.len() as i64)],
        )?;
        encode_gauge(
            &mut e,
            &names::PARTITION_GUARD_HOLDING,
            &[(Vec::new(), shared.holds.len() as i64)],
        )?;
        let active: Vec<(Labels, i64)> = shared
            .alerts
            .active_by_kind()
            .into_iter()
            .map(|(kind, n)| (labels(&names::ALERTS_ACTIVE, &[kind]), n as i64))
            .collect();
        encode_gauge(&mut e, &names::ALERTS_ACTIVE, &active)?;
        drop(shared);
        if let Some(maps) = &inner.maps {
            let st = maps.status();
            let per_map = |f: &Family, v: fn(&MapStatus) -> u64| -> Vec<(Labels, u64)> {
                st.iter().map(|s| (labels(f, &[&s.kind]), v(s))).collect()
            };
            let as_gauge = |samples: Vec<(Labels, u64)>| -> Vec<(Labels, i64)> {
                samples.into_iter().map(|(l, v)| (l, v as i64)).collect()
            };
            let entries = per_map(&names::MAP_ENTRIES, |s| s.entries as u64);
            encode_gauge(&mut e, &names::MAP_ENTRIES, &as_gauge(entries))?;
            let in_sync = per_map(&names::MAP_IN_SYNC, |s| u64::from(s.in_sync));
            encode_gauge(&mut e, &names::MAP_IN_SYNC, &as_gauge(in_sync))?;
            let commands = per_map(&names::MAP_COMMANDS, |s| s.commands);
            encode_counter(&mut e, &names::MAP_COMMANDS, &commands)?;
            let writes = per_map(&names::MAP_FILE_WRITES, |s| s.file_writes);
            encode_counter(&mut e, &names::MAP_FILE_WRITES, &writes)?;
            let errors = per_map(&names::MAP_ERRORS, |s| s.errors);
            encode_counter(&mut e, &names::MAP_ERRORS, &errors)?;
        }
        Ok(())
    }
}
