//! Membership → desired slot placements, per backend: the selector, admission (allowed
//! networks, valid tags), suspicion drain and the partition guard. Pure: no IO, time passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use super::cidr::{self, Cidr};
use super::guard::{GuardAlert, GuardConfig, PartitionGuard};
use super::selector::BackendSelector;
use crate::control::model::MemberStatus;
pub use crate::slots::{DesiredMember as Placement, Want};

/// What the agent knows of a member, as input to the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    /// Node name.
    pub name: String,
    /// Advertised address.
    pub addr: IpAddr,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Serf status.
    pub status: MemberStatus,
    /// Suspected by the failure detector.
    pub suspect: bool,
}

/// A member refused a slot, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Refusal {
    /// Node name.
    pub member: String,
    /// Backend it would have matched.
    pub backend: String,
    /// Why it gets no slot.
    pub reason: String,
}

/// Policy settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Backends and their selectors.
    pub backends: Vec<BackendSelector>,
    /// Allowed networks (empty = any).
    pub allow_cidrs: Vec<Cidr>,
    /// Drain suspected members at once (default on).
    pub suspicion_drain: bool,
    /// Partition guard.
    pub guard: GuardConfig,
}

/// Result of one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Desired placements per backend (every configured backend is present).
    pub placements: BTreeMap<String, Vec<Placement>>,
    /// Refusals that are new since the previous evaluation (log these once).
    pub new_refusals: Vec<Refusal>,
    /// Guard state changes per backend.
    pub alerts: Vec<(String, GuardAlert)>,
}

/// The stateful policy: remembers refusals already reported and the guards.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    guards: BTreeMap<String, PartitionGuard>,
    refusals: BTreeSet<Refusal>,
    suspicion_drains: u64,
    suspected: BTreeSet<String>,
    failed_since: BTreeMap<String, Instant>,
}

/// How long a member reported failed keeps its slot in drain before the slot is freed.
///
/// A graceful leave can reach this node as "failed, then left": memberlist's own leave
/// (a dead message from the node itself) and Serf's leave intent travel separately, and
/// Serf reports a member whose memberlist leave arrives first as failed, then left once
/// the intent follows (`EventMemberLeave (forced)`), usually within a few gossip rounds.
/// Freeing the slot at "failed" would cut the requests a graceful leave must let finish;
/// a member that really crashed was drained on suspicion already, and HAProxy's checks
/// keep traffic off it, so the grace costs nothing.
pub const FAILED_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

impl Policy {
    /// A policy with no history.
    pub fn new(config: PolicyConfig) -> Self {
        Policy {
            config,
            guards: BTreeMap::new(),
            refusals: BTreeSet::new(),
            suspicion_drains: 0,
            suspected: BTreeSet::new(),
            failed_since: BTreeMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Current refusals (every member refused in the last evaluation).
    pub fn refusals(&self) -> impl Iterator<Item = &Refusal> {
        self.refusals.iter()
    }

    /// How many times a suspected member was drained.
    pub fn suspicion_drains(&self) -> u64 {
        self.suspicion_drains
    }

    /// Backends whose guard currently holds members, with the held names.
    pub fn guard_holds(&self) -> BTreeMap<String, Vec<String>> {
        self.guards
            .iter()
            .filter_map(|(b, g)| {
                let held = g.held();
                (!held.is_empty()).then(|| (b.clone(), held.into_iter().collect()))
            })
            .collect()
    }

    /// Computes the desired placements for `members` at time `now`.
    pub fn evaluate(&mut self, now: Instant, members: &[MemberFacts]) -> Evaluation {
        let mut out = Evaluation::default();
        let mut refusals = BTreeSet::new();
        let suspected_now: BTreeSet<String> = members
            .iter()
            .filter(|m| m.suspect && m.status == MemberStatus::Alive)
            .map(|m| m.name.clone())
            .collect();
        if self.config.suspicion_drain {
            self.suspicion_drains += suspected_now.difference(&self.suspected).count() as u64;
        }
        self.suspected = suspected_now;
        self.failed_since.retain(|name, _| {
            members
                .iter()
                .any(|m| &m.name == name && m.status == MemberStatus::Failed)
        });
        for m in members.iter().filter(|m| m.status == MemberStatus::Failed) {
            self.failed_since.entry(m.name.clone()).or_insert(now);
        }
        let in_grace: BTreeSet<String> = self
            .failed_since
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) < FAILED_GRACE)
            .map(|(n, _)| n.clone())
            .collect();

        for selector in &self.config.backends {
            let mut placements = Vec::new();
            for m in members.iter().filter(|m| selector.matches(&m.tags)) {
                match admit(&self.config, m, in_grace.contains(&m.name)) {
                    Ok(p) => placements.push(p),
                    Err(reason) => {
                        refusals.insert(Refusal {
                            member: m.name.clone(),
                            backend: selector.backend.clone(),
                            reason,
                        });
                    }
                }
            }
            let in_rotation: BTreeSet<String> = placements
                .iter()
                .filter(|p| p.want == Want::Ready)
                .map(|p| p.name.clone())
                .collect();
            // out of rotation for a bad reason: suspected, or failed past the grace; a member
            // failed within the grace may be leaving gracefully (ambiguous for the guard)
            let departed: BTreeSet<String> = placements
                .iter()
                .filter(|p| match p.want {
                    Want::Failed => true,
                    Want::Drain => !in_grace.contains(&p.name),
                    _ => false,
                })
                .map(|p| p.name.clone())
                .collect();
            let ambiguous: BTreeSet<String> = placements
                .iter()
                .filter(|p| p.want == Want::Drain && in_grace.contains(&p.name))
                .map(|p| p.name.clone())
                .collect();
            let guard = self.guards.entry(selector.backend.clone()).or_default();
            let (held, alert) =
                guard.evaluate(&self.config.guard, now, &in_rotation, &departed, &ambiguous);
            for p in placements.iter_mut().filter(|p| held.contains(&p.name)) {
                p.want = Want::Ready;
            }
            if let Some(alert) = alert {
                out.alerts.push((selector.backend.clone(), alert));
            }
            out.placements.insert(selector.backend.clone(), placements);
        }
        out.new_refusals = refusals.difference(&self.refusals).cloned().collect();
        self.refusals = refusals;
        out
    }
}

fn admit(cfg: &PolicyConfig, m: &MemberFacts, failed_in_grace: bool) -> Result<Placement, String> {
    if !cidr::allowed(&cfg.allow_cidrs, m.addr) {
        return Err(format!("address {} is outside --allow-cidr", m.addr));
    }
    let port = match m.tags.get("port") {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port tag {p:?} (1-65535)"))?,
        ),
    };
    let weight = match m.tags.get("weight") {
        None => None,
        Some(w) => Some(
            w.parse::<u16>()
                .ok()
                .filter(|w| *w <= 256)
                .ok_or_else(|| format!("invalid weight tag {w:?} (0-256)"))?,
        ),
    };
    let want = match m.status {
        MemberStatus::Alive if m.suspect && cfg.suspicion_drain => Want::Drain,
        MemberStatus::Alive => Want::Ready,
        MemberStatus::Leaving | MemberStatus::Left => Want::Leave,
        MemberStatus::Failed if failed_in_grace => Want::Drain,
        MemberStatus::Failed => Want::Failed,
    };
    Ok(Placement {
        name: m.name.clone(),
        addr: m.addr,
        port,
        weight,
        want,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn member(name: &str, ip: &str, tags: &[(&str, &str)], status: MemberStatus) -> MemberFacts {
        MemberFacts {
            name: name.into(),
            addr: ip.parse().unwrap(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status,
            suspect: false,
        }
    }

    fn policy(cidrs: &[&str]) -> Policy {
        Policy::new(PolicyConfig {
            backends: vec![BackendSelector::parse("web").unwrap()],
            allow_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            suspicion_drain: true,
            guard: GuardConfig::default(),
        })
    }

    fn wants(e: &Evaluation) -> Vec<(String, Want)> {
        e.placements["web"]
            .iter()
            .map(|p| (p.name.clone(), p.want))
            .collect()
    }

    #[test]
    fn alive_members_with_the_role_are_placed_with_their_port_and_weight() {
        let mut p = policy(&[]);
        let e = p.evaluate(
            Instant::now(),
            &[
                member(
                    "a",
                    "127.0.0.2",
                    &[("role", "web"), ("port", "3000"), ("weight", "7")],
                    MemberStatus::Alive,
                ),
                member("b", "127.0.0.3", &[("role", "db")], MemberStatus::Alive),
            ],
        );
        assert_eq!(
            e.placements["web"],
            vec![Placement {
                name: "a".into(),
                addr: "127.0.0.2".parse().unwrap(),
                port: Some(3000),
                weight: Some(7),
                want: Want::Ready
            }]
        );
        assert!(
            e.new_refusals.is_empty(),
            "a wrong role is not a refusal, just not selected"
        );
    }

    #[test]
    fn statuses_map_to_wants() {
        let mut p = policy(&[]);
        let mut suspect = member("s", "127.0.0.5", &[("role", "web")], MemberStatus::Alive);
        suspect.suspect = true;
        let e = p.evaluate(
            Instant::now(),
            &[
                member("a", "127.0.0.2", &[("role", "web")], MemberStatus::Alive),
                member("b", "127.0.0.3", &[("role", "web")], MemberStatus::Alive),
                member("c", "127.0.0.4", &[("role", "web")], MemberStatus::Alive),
                member("l", "127.0.0.6", &[("role", "web")], MemberStatus::Leaving),
                member("f", "127.0.0.7", &[("role", "web")], MemberStatus::Left),
                suspect,
            ],
        );
        let w = wants(&e);
        assert!(w.contains(&("s".into(), Want::Drain)));
        assert!(w.contains(&("l".into(), Want::Leave)));
        assert!(w.contains(&("f".into(), Want::Leave)));
        assert_eq!(p.suspicion_drains(), 1);
    }

    #[test]
    fn an_address_outside_the_allowed_networks_is_refused_and_reported_once() {
        let mut p = policy(&["10.0.0.0/8"]);
        let ms = [member(
            "x",
            "192.0.2.1",
            &[("role", "web")],
            MemberStatus::Alive,
        )];
        let e = p.evaluate(Instant::now(), &ms);
        assert!(e.placements["web"].is_empty());
        assert_eq!(e.new_refusals.len(), 1);
        assert!(e.new_refusals[0].reason.contains("outside --allow-cidr"));
        let again = p.evaluate(Instant::now(), &ms);
        assert!(again.new_refusals.is_empty(), "refusals are logged once");
        assert_eq!(p.refusals().count(), 1, "but still shown in status");
    }

    #[test]
    fn bad_port_and_weight_tags_are_refused() {
        let mut p = policy(&[]);
        let e = p.evaluate(
            Instant::now(),
            &[
                member(
                    "p",
                    "127.0.0.2",
                    &[("role", "web"), ("port", "70000")],
                    MemberStatus::Alive,
                ),
                member(
                    "w",
                    "127.0.0.3",
                    &[("role", "web"), ("weight", "300")],
                    MemberStatus::Alive,
                ),
                member(
                    "z",
                    "127.0.0.4",
                    &[("role", "web"), ("port", "0")],
                    MemberStatus::Alive,
                ),
            ],
        );
        assert!(e.placements["web"].is_empty());
        assert_eq!(e.new_refusals.len(), 3);
    }

    #[test]
    fn a_failed_member_drains_for_the_grace_time_before_its_slot_is_freed() {
        let mut p = policy(&[]);
        p.config.guard.share = 1.0; // one member of one: not the guard's business here
        let t = Instant::now();
        let alive = member("a", "127.0.0.2", &[("role", "web")], MemberStatus::Alive);
        let mut failed = alive.clone();
        failed.status = MemberStatus::Failed;
        p.evaluate(t, &[alive]);
        let e = p.evaluate(t + Duration::from_millis(10), std::slice::from_ref(&failed));
        assert_eq!(wants(&e), vec![("a".into(), Want::Drain)]);
        // the leave intent arrives: a graceful leave, not a failure
        let mut left = failed.clone();
        left.status = MemberStatus::Left;
        let e = p.evaluate(t + Duration::from_millis(20), &[left]);
        assert_eq!(wants(&e), vec![("a".into(), Want::Leave)]);
        // a real failure is freed once the grace time has passed
        let e = p.evaluate(t + Duration::from_millis(30), std::slice::from_ref(&failed));
        assert_eq!(wants(&e), vec![("a".into(), Want::Drain)]);
        let e = p.evaluate(t + FAILED_GRACE + Duration::from_millis(30), &[failed]);
        assert_eq!(wants(&e), vec![("a".into(), Want::Failed)]);
    }

    #[test]
    fn suspicion_drain_can_be_switched_off() {
        let mut p = policy(&[]);
        p.config.suspicion_drain = false;
        let mut s = member("s", "127.0.0.5", &[("role", "web")], MemberStatus::Alive);
        s.suspect = true;
        let e = p.evaluate(Instant::now(), &[s]);
        assert_eq!(wants(&e), vec![("s".into(), Want::Ready)]);
        assert_eq!(p.suspicion_drains(), 0);
    }

    fn four_alive() -> Vec<MemberFacts> {
        ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                member(
                    n,
                    &format!("127.0.0.{}", i + 2),
                    &[("role", "web")],
                    MemberStatus::Alive,
                )
            })
            .collect()
    }

    #[test]
    fn three_of_four_suspected_then_failed_together_stay_ready_under_the_guard() {
        let mut p = policy(&[]);
        let t = Instant::now();
        let alive = four_alive();
        p.evaluate(t, &alive);
        // a partition: the load balancer suspects them first, then declares them failed
        let mut suspected = alive.clone();
        for m in &mut suspected[1..] {
            m.suspect = true;
        }
        let e = p.evaluate(t + Duration::from_secs(1), &suspected);
        assert!(
            wants(&e).iter().all(|(_, w)| *w == Want::Ready),
            "{:?}",
            wants(&e)
        );
        assert_eq!(e.alerts.len(), 1);
        assert_eq!(p.guard_holds()["web"], vec!["b", "c", "d"]);
        let mut failed = alive.clone();
        for m in &mut failed[1..] {
            m.status = MemberStatus::Failed;
        }
        let e = p.evaluate(t + Duration::from_secs(2), &failed);
        assert!(wants(&e).iter().all(|(_, w)| *w == Want::Ready));
        assert!(e.alerts.is_empty(), "{:?}", e.alerts);
        let e = p.evaluate(t + Duration::from_secs(40), &failed);
        assert_eq!(
            wants(&e).iter().filter(|(_, w)| *w == Want::Failed).count(),
            3
        );
    }

    #[test]
    fn three_of_four_heard_failed_without_suspicion_are_held_once_the_grace_passes() {
        let mut p = policy(&[]);
        let t = Instant::now();
        let alive = four_alive();
        p.evaluate(t, &alive);
        let mut failed = alive.clone();
        for m in &mut failed[1..] {
            m.status = MemberStatus::Failed;
        }
        let e = p.evaluate(t + Duration::from_secs(1), &failed);
        assert!(e.alerts.is_empty(), "within the grace: may be leaving");
        let e = p.evaluate(t + Duration::from_secs(1) + FAILED_GRACE, &failed);
        assert_eq!(e.alerts.len(), 1);
        assert!(wants(&e).iter().all(|(_, w)| *w == Want::Ready));
    }

    #[test]
    fn a_graceful_scale_down_never_raises_the_partition_guard() {
        // every order in which a leave of half the backend can reach the agent
        for heard_failed_first in [false, true] {
            for leaving_first in [false, true] {
                let mut p = policy(&[]);
                let t = Instant::now();
                let alive = four_alive();
                p.evaluate(t, &alive);
                let mut step = |ms: u64, status: MemberStatus| {
                    let mut ms_now = alive.clone();
                    for m in &mut ms_now[2..] {
                        m.status = status;
                    }
                    p.evaluate(t + Duration::from_millis(ms), &ms_now).alerts
                };
                let mut alerts = Vec::new();
                if leaving_first {
                    alerts.extend(step(10, MemberStatus::Leaving));
                }
                if heard_failed_first {
                    alerts.extend(step(20, MemberStatus::Failed));
                }
                alerts.extend(step(30, MemberStatus::Left));
                alerts.extend(step(5_000, MemberStatus::Left));
                assert!(
                    alerts.is_empty(),
                    "failed first {heard_failed_first}, leaving first {leaving_first}: {alerts:?}"
                );
            }
        }
    }
}
