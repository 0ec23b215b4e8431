//! The assignment book of one backend (sans-IO): which member holds which slot, the
//! queue of members waiting for a slot, graceful-leave deadlines (with timer tokens) and the
//! slots failed members held. The reconciler owns one book per backend and feeds it desired
//! members, observed slots and time; it gives back slot targets for the planner.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::discovery::ObservedSlot;
use super::planner::Target;
use super::rendezvous;

/// What the agent wants for a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    /// In rotation (after its first health check passes).
    Ready,
    /// Suspect: keep the slot, no new requests.
    Drain,
    /// Graceful leave: drain → maint when idle or at the deadline → clear → free.
    Leave,
    /// Failed: maint now; the slot is freed but remembered, so a returning member gets it
    /// back if it is still free.
    Failed,
}

/// One member the agent wants in a backend. Members absent from the list are treated as
/// [`Want::Leave`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DesiredMember {
    /// Node name (the stable key).
    pub name: String,
    /// Address to put in the slot.
    pub addr: IpAddr,
    /// Port (`None`: the slot's template port from haproxy.cfg).
    pub port: Option<u16>,
    /// Weight (`None`: the slot's configured weight).
    pub weight: Option<u16>,
    /// What to do with it.
    pub want: Want,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Serving,
    Leaving {
        token: u64,
        deadline: Instant,
        passed: bool,
    },
}

/// Why a slot's occupant leaves it, in the words of the log line (`reason=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The member sent a leave intent (Serf status `leaving`/`left`): drained, then released.
    Leave,
    /// The policy refused the member (bad tag, address outside `--allow-cidr`…): drained,
    /// then released. Holds the policy's reason.
    Refused(String),
    /// The member is no longer in the cluster's list for this backend (reaped, or its tags
    /// no longer select the backend): drained, then released.
    Gone,
    /// The member failed (crash or partition): its slot is emptied at once, or, while it
    /// still has sessions, drained until they end or the drain deadline passes (a graceful
    /// leave can be heard as "failed, then left").
    Crash,
    /// A graceful departure finished (sessions ended or the drain deadline passed).
    Released,
    /// An address found in HAProxy that matches no member.
    Unowned,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Leave => f.write_str("leave"),
            Cause::Refused(why) => write!(f, "refused: {why}"),
            Cause::Gone => f.write_str("gone"),
            Cause::Crash => f.write_str("crash"),
            Cause::Released => f.write_str("released"),
            Cause::Unowned => f.write_str("unowned"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Occupant {
    /// `None`: an address found in HAProxy that matches no member (released gracefully).
    member: Option<String>,
    /// Why it is leaving (set with [`Phase::Leaving`]).
    cause: Option<Cause>,
    addr: IpAddr,
    port: u16,
    weight: Option<u16>,
    drain: bool,
    phase: Phase,
}

/// A slot whose graceful departure finished, from [`Book::release_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The slot, empty again.
    pub slot: String,
    /// Who held it (`None`: an unowned address).
    pub member: Option<String>,
    /// Why it left.
    pub cause: Cause,
}

/// A drain deadline to schedule: when it fires, call [`Book::on_deadline`] with the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRequest {
    /// When.
    pub at: Instant,
    /// Which slot.
    pub slot: String,
    /// Token: a deadline whose token no longer matches does nothing.
    pub token: u64,
}

/// Puts `occ` (in `slot`) into its leaving phase with a fresh timer token; returns the
/// drain deadline to schedule.
fn start_leaving(
    next_token: &mut u64,
    occ: &mut Occupant,
    slot: &str,
    deadline: Instant,
) -> TimerRequest {
    *next_token += 1;
    occ.phase = Phase::Leaving {
        token: *next_token,
        deadline,
        passed: false,
    };
    TimerRequest {
        at: deadline,
        slot: slot.to_string(),
        token: *next_token,
    }
}

/// One backend's assignments.
#[derive(Debug, Clone, Default)]
pub struct Book {
    occupants: BTreeMap<String, Occupant>,
    remembered: HashMap<String, String>,
    queue: Vec<String>,
    rebuilt: bool,
    next_token: u64,
    unplaceable: Vec<String>,
    /// The last occupant of a slot emptied since, and why (for the clearing's log line);
    /// forgotten when the slot is given to someone.
    former: HashMap<String, (Option<String>, Cause)>,
    /// Why policy refused members (member → reason), from the manager.
    refusals: HashMap<String, String>,
}

impl Book {
    /// An empty book; the first [`Book::update`] rebuilds member → slot from HAProxy.
    pub fn new() -> Book {
        Book::default()
    }

    /// Member in `slot`, if any.
    pub fn member_of(&self, slot: &str) -> Option<&str> {
        self.occupants.get(slot).and_then(|o| o.member.as_deref())
    }

    /// Slot of `member`, if any.
    pub fn slot_of(&self, member: &str) -> Option<&str> {
        self.occupants
            .iter()
            .find(|(_, o)| o.member.as_deref() == Some(member))
            .map(|(s, _)| s.as_str())
    }

    /// Members waiting for a free slot, in the order they will get one.
    pub fn queue(&self) -> &[String] {
        &self.queue
    }

    /// Members that could not be placed because they have no port and the backend has no
    /// template port.
    pub fn unplaceable(&self) -> &[String] {
        &self.unplaceable
    }

    /// The member a slot was last emptied of and why, until the slot is given again.
    pub fn former(&self, slot: &str) -> Option<(Option<&str>, &Cause)> {
        self.former.get(slot).map(|(m, c)| (m.as_deref(), c))
    }

    /// Why `slot`'s occupant is leaving, while it drains.
    pub fn cause(&self, slot: &str) -> Option<&Cause> {
        self.occupants.get(slot).and_then(|o| o.cause.as_ref())
    }

    /// The policy's refusals for this backend (member → reason): a member that loses its
    /// slot because of one is logged as `refused: <reason>`.
    pub fn set_refusals(&mut self, refusals: HashMap<String, String>) {
        self.refusals = refusals;
    }

    /// Forgets the rebuild so the next update matches members to HAProxy's slots again.
    pub fn forget(&mut self) {
        let refusals = std::mem::take(&mut self.refusals);
        *self = Book::default();
        self.refusals = refusals;
    }

    /// Feeds the desired members and the observed slots; returns new drain deadlines.
    pub fn update(
        &mut self,
        desired: &[DesiredMember],
        observed: &[ObservedSlot],
        placeholder: IpAddr,
        template_port: Option<u16>,
        now: Instant,
        drain_timeout: Duration,
    ) -> Vec<TimerRequest> {
        let mut timers = Vec::new();
        let port_of = |d: &DesiredMember| d.port.or(template_port);
        // slots that disappeared (config changed) lose their occupants
        self.occupants
            .retain(|s, _| observed.iter().any(|o| &o.name == s));
        if !self.rebuilt {
            self.rebuilt = true;
            // a slot out of maintenance holds someone; a slot in maintenance is free
            // (whatever address it still shows is cleared when it is next used)
            let _ = placeholder;
            for o in observed
                .iter()
                .filter(|o| o.admin != crate::haproxy::AdminState::Maint)
            {
                let (Some(addr), Some(port)) = (o.addr, o.port) else {
                    continue;
                };
                let m = desired.iter().find(|d| {
                    d.addr == addr
                        && port_of(d) == Some(port)
                        && !matches!(d.want, Want::Failed)
                        && self.slot_of(&d.name).is_none()
                });
                let occ = Occupant {
                    member: m.map(|d| d.name.clone()),
                    cause: None,
                    addr,
                    port,
                    weight: m.and_then(|d| d.weight),
                    drain: false,
                    phase: Phase::Serving,
                };
                self.occupants.insert(o.name.clone(), occ);
            }
        }
        let by_name: HashMap<&str, &DesiredMember> =
            desired.iter().map(|d| (d.name.as_str(), d)).collect();
        // existing occupants follow their member's wish
        let mut freed = Vec::new();
        for (slot, occ) in self.occupants.iter_mut() {
            let want = occ
                .member
                .as_deref()
                .and_then(|m| by_name.get(m))
                .map(|d| d.want);
            match (want, occ.member.as_deref().and_then(|m| by_name.get(m))) {
                // a failed member's slot that still has sessions drains like a leave (until
                // they end or the drain deadline): a graceful leave heard as "failed, then
                // left" must not be cut short; an idle one (a crash) is emptied at once
                (Some(Want::Failed), _) if matches!(occ.phase, Phase::Leaving { .. }) => {}
                (Some(Want::Failed), _)
                    if observed
                        .iter()
                        .find(|o| &o.name == slot)
                        .is_some_and(|o| o.scur > 0) =>
                {
                    occ.cause = Some(Cause::Crash);
                    timers.push(start_leaving(
                        &mut self.next_token,
                        occ,
                        slot,
                        now + drain_timeout,
                    ));
                }
                (Some(Want::Failed), _) => freed.push(slot.clone()),
                (Some(Want::Ready | Want::Drain), Some(d)) if port_of(d).is_some() => {
                    occ.addr = d.addr;
                    occ.port = port_of(d).unwrap_or(occ.port);
                    occ.weight = d.weight;
                    occ.drain = d.want == Want::Drain;
                    occ.phase = Phase::Serving;
                    occ.cause = None;
                }
                (want, _) => {
                    if occ.phase == Phase::Serving {
                        occ.cause = Some(match (&occ.member, want) {
                            (None, _) => Cause::Unowned,
                            (Some(_), Some(Want::Leave)) => Cause::Leave,
                            (Some(m), _) => match self.refusals.get(m) {
                                Some(why) => Cause::Refused(why.clone()),
                                None => Cause::Gone,
                            },
                        });
                        timers.push(start_leaving(
                            &mut self.next_token,
                            occ,
                            slot,
                            now + drain_timeout,
                        ));
                    }
                }
            }
        }
        for slot in freed {
            if let Some(Occupant {
                member: Some(m), ..
            }) = self.occupants.remove(&slot)
            {
                self.former
                    .insert(slot.clone(), (Some(m.clone()), Cause::Crash));
                self.remembered.insert(m, slot);
            }
        }
        // placement: queued members first (in queue order), then new ones by name
        let mut waiting: Vec<&DesiredMember> = Vec::new();
        for q in &self.queue {
            if let Some(d) = by_name.get(q.as_str()) {
                waiting.push(d);
            }
        }
        let queued: std::collections::HashSet<&str> =
            self.queue.iter().map(String::as_str).collect();
        let mut fresh: Vec<&DesiredMember> = desired
            .iter()
            .filter(|d| !queued.contains(d.name.as_str()))
            .collect();
        fresh.sort_by(|a, b| a.name.cmp(&b.name));
        waiting.extend(fresh);
        let mut queue = Vec::new();
        self.unplaceable.clear();
        let mut placed: std::collections::HashSet<String> = self
            .occupants
            .values()
            .filter_map(|o| o.member.clone())
            .collect();
        let mut free: Vec<&str> = observed
            .iter()
            .map(|o| o.name.as_str())
            .filter(|s| !self.occupants.contains_key(*s))
            .collect();
        for d in waiting {
            if !matches!(d.want, Want::Ready | Want::Drain) || placed.contains(&d.name) {
                continue;
            }
            let Some(port) = port_of(d) else {
                self.unplaceable.push(d.name.clone());
                continue;
            };
            let slot = match self.remembered.get(&d.name) {
                Some(s) if free.contains(&s.as_str()) => Some(s.as_str()),
                _ => rendezvous::best(&d.name, free.iter().copied()),
            };
            match slot.map(str::to_string) {
                Some(slot) => {
                    free.retain(|s| *s != slot);
                    placed.insert(d.name.clone());
                    self.remembered.remove(&d.name);
                    self.former.remove(&slot);
                    self.occupants.insert(
                        slot,
                        Occupant {
                            member: Some(d.name.clone()),
                            cause: None,
                            addr: d.addr,
                            port,
                            weight: d.weight,
                            drain: d.want == Want::Drain,
                            phase: Phase::Serving,
                        },
                    );
                }
                None => queue.push(d.name.clone()),
            }
        }
        self.queue = queue;
        timers
    }

    /// A drain deadline fired. Returns false (and does nothing) when the token is stale:
    /// the slot has since been reused, or the member came back.
    pub fn on_deadline(&mut self, slot: &str, token: u64) -> bool {
        match self.occupants.get_mut(slot) {
            Some(Occupant {
                phase: Phase::Leaving {
                    token: t, passed, ..
                },
                ..
            }) if *t == token => {
                *passed = true;
                true
            }
            _ => false,
        }
    }

    /// Frees the slots whose graceful leave has finished (the slot is empty again).
    /// Returns each freed slot with its former member and why it left.
    pub fn release_done(&mut self, observed: &[ObservedSlot]) -> Vec<Released> {
        let mut done = Vec::new();
        self.occupants.retain(|slot, occ| {
            let finished = matches!(occ.phase, Phase::Leaving { .. })
                && observed
                    .iter()
                    .find(|o| &o.name == slot)
                    .is_some_and(|o| o.admin == crate::haproxy::AdminState::Maint);
            if finished {
                done.push(Released {
                    slot: slot.clone(),
                    member: occ.member.clone(),
                    cause: occ.cause.clone().unwrap_or(Cause::Gone),
                });
            }
            !finished
        });
        for r in &done {
            self.former
                .insert(r.slot.clone(), (r.member.clone(), Cause::Released));
            // a failed member drained to the end gets its slot back if it returns, as one
            // emptied at once does
            if let (Cause::Crash, Some(m)) = (&r.cause, &r.member) {
                self.remembered.insert(m.clone(), r.slot.clone());
            }
        }
        done
    }

    /// True while some slot waits for sessions to end.
    pub fn has_leaving(&self) -> bool {
        self.occupants
            .values()
            .any(|o| matches!(o.phase, Phase::Leaving { .. }))
    }

    /// The target of every observed slot.
    pub fn targets(&self, observed: &[ObservedSlot]) -> Vec<(String, Target)> {
        observed
            .iter()
            .map(|o| {
                let t = match self.occupants.get(&o.name) {
                    None => Target::Empty,
                    Some(occ) => match occ.phase {
                        Phase::Serving => Target::Serve {
                            addr: occ.addr,
                            port: occ.port,
                            weight: occ.weight.map(u32::from).unwrap_or(o.iweight),
                            drain: occ.drain,
                            admitted: false,
                        },
                        Phase::Leaving { passed, .. } => Target::Leave {
                            addr: occ.addr,
                            port: occ.port,
                            deadline_passed: passed,
                        },
                    },
                };
                (o.name.clone(), t)
            })
            .collect()
    }
}
