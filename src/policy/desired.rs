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
}

impl Policy {
    /// A policy with no history.
    pub fn new(config: PolicyConfig) -> Self {
        Policy {
            config,
            guards: BTreeMap::new(),
            refusals: BTreeSet::new(),
            suspicion_drains: 0,
            suspected: BTreeSet::new(),
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

        for selector in &self.config.backends {
            let mut placements = Vec::new();
            for m in members.iter().filter(|m| selector.matches(&m.tags)) {
                match admit(&self.config, m) {
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
            let departed: BTreeSet<String> = placements
                .iter()
                .filter(|p| matches!(p.want, Want::Drain | Want::Failed))
                .map(|p| p.name.clone())
                .collect();
            let guard = self.guards.entry(selector.backend.clone()).or_default();
            let (held, alert) = guard.evaluate(&self.config.guard, now, &in_rotation, &departed);
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

fn admit(cfg: &PolicyConfig, m: &MemberFacts) -> Result<Placement, String> {
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
    fn suspicion_drain_can_be_switched_off() {
        let mut p = policy(&[]);
        p.config.suspicion_drain = false;
        let mut s = member("s", "127.0.0.5", &[("role", "web")], MemberStatus::Alive);
        s.suspect = true;
        let e = p.evaluate(Instant::now(), &[s]);
        assert_eq!(wants(&e), vec![("s".into(), Want::Ready)]);
        assert_eq!(p.suspicion_drains(), 0);
    }

    #[test]
    fn three_of_four_failing_together_stay_ready_under_the_guard() {
        let mut p = policy(&[]);
        let t = Instant::now();
        let names = ["a", "b", "c", "d"];
        let alive: Vec<MemberFacts> = names
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
            .collect();
        p.evaluate(t, &alive);
        let mut failed = alive.clone();
        for m in &mut failed[1..] {
            m.status = MemberStatus::Failed;
        }
        let e = p.evaluate(t + Duration::from_secs(1), &failed);
        assert!(
            wants(&e).iter().all(|(_, w)| *w == Want::Ready),
            "{:?}",
            wants(&e)
        );
        assert_eq!(e.alerts.len(), 1);
        assert_eq!(p.guard_holds()["web"], vec!["b", "c", "d"]);
        let e = p.evaluate(t + Duration::from_secs(40), &failed);
        assert_eq!(
            wants(&e).iter().filter(|(_, w)| *w == Want::Failed).count(),
            3
        );
    }
}
