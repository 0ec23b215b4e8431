//! The HAProxy manager: membership → [`Policy`] → reconciler. One task owns the policy; it
//! waits on the gossip side's versioned member table ([`Gossip::watch_members`]), so it
//! wakes on every change of any member — status, address, tags, suspicion, refutation,
//! leave intent — whether or not the change has a Serf event. It evaluates at once and
//! hands each backend's desired members to the reconciler, which plans, applies in one
//! batched round trip, and reads back.
//!
//! Bursts: no waiting window. Changes published while an evaluation or an apply runs are
//! folded into the next one (the watch keeps only the latest table; the reconciler drains
//! its queue before each pass), so a single change costs no added latency and a join storm
//! delivered in one gossip step is one evaluation and one runtime-API batch.
//!
//! The [`TICK`] remains as a safety net and as the clock of the policy's own deadlines
//! (failed grace, partition guard hold).
//!
//! Metrics: the manager registers its families ([`collector`]); the reconciler feeds the
//! latency histograms, from the snapshot's publication time to HAProxy's answer.

pub mod alerts;
mod collector;
pub mod first_check;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::config::AgentConfig;
use crate::control::model::{MemberView, SlotView};
use crate::gossip::{Gossip, Member, MemberSnapshot};
use crate::maps::{spawn_map_sync, MapSyncConfig, MapSyncHandle};
use crate::metrics::latency::Latency;
use crate::metrics::MetricsRegistry;
use crate::policy::{GuardAlert, MemberFacts, Placement, Policy, PolicyConfig, Refusal};
use crate::slots::{spawn_reconciler, ReconcilerConfig, ReconcilerHandle, ReconcilerStatus};
use alerts::{AlertBook, AlertKind};

/// The policy's clock (failed grace, guard hold) ticks this often even without membership
/// changes; also the resync safety net.
pub const TICK: Duration = Duration::from_secs(1);
/// Before its first evaluation the manager waits until the member table stayed unchanged
/// this long (a join's push/pulls arrive one by one)…
pub const SETTLE_QUIET: Duration = Duration::from_millis(50);
/// …but no longer than this.
pub const SETTLE_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Shared {
    evaluations: u64,
    suspicion_drains: u64,
    refusals: Vec<Refusal>,
    holds: BTreeMap<String, Vec<String>>,
    alerts: AlertBook,
}

/// Handle to the manager; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    socket: String,
    backends: Vec<String>,
    shared: Arc<Mutex<Shared>>,
    reconciler: Mutex<Option<ReconcilerHandle>>,
    status: tokio::sync::watch::Receiver<ReconcilerStatus>,
    task: Mutex<Option<JoinHandle<()>>>,
    synced: tokio::sync::watch::Sender<bool>,
    maps: Option<MapSyncHandle>,
}

impl Manager {
    /// Starts the reconciler and the evaluation task for `cfg`'s backends, and registers
    /// the manager's metric families in `metrics`. Needs `cfg.haproxy_socket`.
    pub fn start(cfg: &AgentConfig, gossip: Gossip, metrics: &MetricsRegistry) -> Option<Manager> {
        let socket = cfg.haproxy_socket.clone()?;
        let backends: Vec<String> = cfg.backends.iter().map(|b| b.backend.clone()).collect();
        let mut rcfg = ReconcilerConfig::new(socket.clone(), backends.clone());
        rcfg.drain_timeout = cfg.drain_timeout;
        rcfg.server_state_file = cfg.server_state_file.clone();
        rcfg.latency = Some(Latency::register(metrics));
        rcfg.admission = cfg.admission.clone().into_iter().collect();
        let reconciler = spawn_reconciler(rcfg);
        let status = reconciler.subscribe();
        let maps = (!cfg.maps.is_empty()).then(|| {
            let g = gossip.clone();
            spawn_map_sync(
                MapSyncConfig::new(socket.clone(), cfg.maps.clone()),
                reconciler.subscribe(),
                Arc::new(move || g.members().iter().map(member_view).collect()),
            )
        });
        let policy = Policy::new(PolicyConfig {
            backends: cfg.backends.clone(),
            allow_cidrs: cfg.allow_cidrs.clone(),
            suspicion_drain: cfg.suspicion_drain,
            guard: cfg.guard,
        });
        let inner = Arc::new(Inner {
            socket,
            backends,
            shared: Arc::new(Mutex::new(Shared::default())),
            reconciler: Mutex::new(Some(reconciler)),
            status,
            task: Mutex::new(None),
            synced: tokio::sync::watch::channel(false).0,
            maps,
        });
        let sink = {
            let inner = inner.clone();
            move |backend: &str,
                  placements: Vec<Placement>,
                  refusals: Vec<(String, String)>,
                  changed: SystemTime| {
                if let Some(r) = lock(&inner.reconciler).as_ref() {
                    r.set_refusals(backend, refusals.into_iter().collect());
                    r.set_desired_at(backend, placements, changed);
                }
            }
        };
        let on_change = {
            let inner = inner.clone();
            move || {
                if let Some(m) = &inner.maps {
                    m.changed();
                }
            }
        };
        let task = tokio::spawn(evaluate_loop(
            Evaluator {
                policy,
                shared: inner.shared.clone(),
                sent: BTreeMap::new(),
            },
            inner.synced.subscribe(),
            gossip.watch_members(),
            on_change,
            sink,
        ));
        *lock(&inner.task) = Some(task);
        tokio::spawn(first_check_loop(inner.clone(), cfg.first_check_alert));
        let manager = Manager { inner };
        metrics.register_collector(Box::new(collector::ManagerCollector(manager.clone())));
        Some(manager)
    }

    /// The membership is known: the join through the seeds succeeded (or there are no
    /// seeds). Nothing is evaluated or sent to HAProxy before this: a restarted agent that
    /// has not heard from the cluster yet would otherwise see no members and drain every
    /// slot it finds filled.
    pub fn membership_synced(&self) {
        self.inner.synced.send_replace(true);
    }

    /// True once [`Manager::membership_synced`] was called.
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// The reconciler's latest status.
    pub fn reconciler_status(&self) -> ReconcilerStatus {
        self.inner.status.borrow().clone()
    }

    /// True once HAProxy was read and the first plan applied.
    pub fn ready(&self) -> bool {
        self.inner.status.borrow().ready
    }

    /// Every slot of every managed backend.
    pub fn slots(&self) -> Vec<SlotView> {
        self.inner.status.borrow().slots.clone()
    }

    /// Waits until the reconciler reports ready: true; false when it stopped first.
    pub async fn wait_ready(&self) -> bool {
        let mut rx = self.inner.status.clone();
        let ready = rx.wait_for(|s| s.ready).await.is_ok();
        ready
    }

    /// The `haproxy` part of `haserf status`.
    pub fn status_json(&self) -> Value {
        let st = self.reconciler_status();
        let shared = lock(&self.inner.shared);
        let mut backends = serde_json::Map::new();
        for b in &self.inner.backends {
            let slots: Vec<&SlotView> = st.slots.iter().filter(|s| &s.backend == b).collect();
            let used = slots.iter().filter(|s| s.member.is_some()).count();
            backends.insert(
                b.clone(),
                json!({
                    "slots": slots.len(),
                    "used": used,
                    "free": slots.len() - used,
                    "queued": st.queue.get(b).cloned().unwrap_or_default(),
                    "guard_holding": shared.holds.get(b).cloned().unwrap_or_default(),
                }),
            );
        }
        json!({
            "ready": st.ready,
            "membership_synced": *self.inner.synced.borrow(),
            "socket": self.inner.socket,
            "pid": st.haproxy_pid,
            "uptime_sec": st.haproxy_uptime_sec,
            "restarts_seen": st.haproxy_restarts,
            "backends": backends,
            "last_apply": st.last_apply.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()),
            "last_apply_at": st.last_apply.map(alerts::rfc3339),
            "applies": st.applies,
            "apply_errors": st.apply_errors,
            "drift_repairs": st.drift_repairs,
            "server_state_writes": st.server_state_writes,
            "server_state_error": st.server_state_error,
            "last_error": st.last_error,
            "backend_errors": st.backend_errors,
            "refused_commands": st.refused_commands,
            "check_gate_last_ms": st.check_gate_last_ms,
            "check_gate_max_ms": st.check_gate_max_ms,
            "awaiting_first_check": st.awaiting_first_check,
            "evaluations": shared.evaluations,
            "suspicion_drains": shared.suspicion_drains,
            "refused": shared.refusals,
            "alerts": shared.alerts.views(),
            "maps": self.inner.maps.as_ref().map(MapSyncHandle::status).unwrap_or_default(),
        })
    }

    /// Stops the evaluation task, the map task and the reconciler. HAProxy keeps its
    /// slots and maps.
    pub async fn shutdown(&self) {
        if let Some(task) = lock(&self.inner.task).take() {
            task.abort();
        }
        if let Some(m) = &self.inner.maps {
            m.shutdown().await;
        }
        let reconciler = lock(&self.inner.reconciler).take();
        if let Some(r) = reconciler {
            r.shutdown().await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A gossip member as the status socket, the maps and the SPOE agent show it.
pub fn member_view(m: &Member) -> MemberView {
    MemberView {
        name: m.name.clone(),
        addr: m.addr.to_string(),
        port: m.port,
        tags: m.tags.clone(),
        status: m.status,
        suspect: m.suspect,
    }
}

/// The policy's input for a gossip member.
pub fn facts(m: &Member) -> MemberFacts {
    MemberFacts {
        name: m.name.clone(),
        addr: m.addr,
        tags: m.tags.clone(),
        status: m.status,
        suspect: m.suspect,
    }
}

/// Raises and resolves `first_check` alerts from the reconciler's waits: on every status
/// update, and once a second (a wait grows without one).
async fn first_check_loop(inner: Arc<Inner>, limit: Duration) {
    let mut rx = inner.status.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
        let waits = rx.borrow_and_update().awaiting_first_check.clone();
        let changes = first_check::evaluate(
            &mut lock(&inner.shared).alerts,
            &waits,
            limit,
            SystemTime::now(),
        );
        for c in changes {
            match c {
                first_check::Change::Raised(w) => tracing::warn!(
                    member = %w.member, backend = %w.backend, slot = %w.slot, waited_ms = w.waited_ms,
                    "slot still waits for its first passing health check (kept in drain)"
                ),
                first_check::Change::Resolved(backend, slot) => tracing::info!(
                    %backend, %slot, "slot no longer waits for its first health check"
                ),
            }
        }
    }
}

/// The evaluation state one task owns: the policy and what each backend was last given.
struct Evaluator {
    policy: Policy,
    shared: Arc<Mutex<Shared>>,
    sent: BTreeMap<String, Vec<Placement>>,
}

/// Waits for the membership to be known, then evaluates on every new version of the member
/// table (and on each [`TICK`]), handing changed placements to `sink` with the time of the
/// first member change they include (the tick's own evaluations: now). `on_change` runs once
/// per new version seen. Returns when the member table's sender is gone (gossip stopped).
async fn evaluate_loop<C, S>(
    mut ev: Evaluator,
    mut synced: tokio::sync::watch::Receiver<bool>,
    mut members: tokio::sync::watch::Receiver<MemberSnapshot>,
    on_change: C,
    sink: S,
) where
    C: Fn() + Send + 'static,
    S: Fn(&str, Vec<Placement>, Vec<(String, String)>, SystemTime) + Send + 'static,
{
    if synced.wait_for(|s| *s).await.is_err() {
        return;
    }
    // the first evaluation waits for the table to settle: the push/pulls of a join (or of a
    // restarted agent finding its members through the served slots) land one by one, and an
    // evaluation between them would drain the members not heard of yet
    let settle = tokio::time::Instant::now();
    while settle.elapsed() < SETTLE_MAX {
        match tokio::time::timeout(SETTLE_QUIET, members.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return,
            Err(_) => break,
        }
    }
    tracing::info!("membership known: managing HAProxy slots");
    // the first evaluation covers everything known so far and dates from now
    let mut seen = members.borrow().version;
    loop {
        let (list, changed_at) = {
            let snap = members.borrow_and_update();
            let first = snap.first_change_after(seen);
            seen = snap.version;
            (snap.members.clone(), first)
        };
        if changed_at.is_some() {
            on_change();
        }
        // a change the policy's own clock makes (failed grace, guard hold) dates from now
        let changed_at = changed_at.unwrap_or_else(SystemTime::now);
        ev.evaluate(&list, changed_at, &sink);
        tokio::select! {
            r = members.changed() => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

impl Evaluator {
    fn evaluate<S>(&mut self, members: &[Member], changed_at: SystemTime, sink: &S)
    where
        S: Fn(&str, Vec<Placement>, Vec<(String, String)>, SystemTime),
    {
        let policy = &mut self.policy;
        let facts: Vec<MemberFacts> = members.iter().map(facts).collect();
        // tokio's clock: simulated time in tests moves the policy's deadlines too
        let eval = policy.evaluate(tokio::time::Instant::now().into_std(), &facts);
        for r in &eval.new_refusals {
            tracing::warn!(member = %r.member, backend = %r.backend, reason = %r.reason, "member refused a slot");
        }
        let now = SystemTime::now();
        let mut shared = lock(&self.shared);
        for (backend, alert) in &eval.alerts {
            let guard = AlertKind::PartitionGuard;
            match alert {
                GuardAlert::Holding(names) => {
                    tracing::error!(%backend, members = ?names, hold = ?policy.config().guard.hold,
                        "partition guard: many members failed at once; keeping them in rotation");
                    let message = format!(
                        "holding {} failed members in rotation: {}",
                        names.len(),
                        names.join(", ")
                    );
                    shared.alerts.raise(guard, backend, "", message, now);
                }
                GuardAlert::Recovered => {
                    tracing::warn!(%backend, "partition guard: held members are back");
                    shared
                        .alerts
                        .resolve(guard, backend, "", "held members recovered".into(), now);
                }
                GuardAlert::Released(names) => {
                    tracing::warn!(%backend, members = ?names, "partition guard: hold time passed; removing failed members");
                    let how = format!("hold time passed; removed {}", names.join(", "));
                    shared.alerts.resolve(guard, backend, "", how, now);
                }
            }
        }
        shared.alerts.expire(now);
        shared.evaluations += 1;
        shared.suspicion_drains = policy.suspicion_drains();
        shared.refusals = policy.refusals().cloned().collect();
        shared.holds = policy.guard_holds();
        drop(shared);
        for (backend, placements) in eval.placements {
            if self.sent.get(&backend) != Some(&placements) {
                // the log line of a member losing its slot names the refusal
                let refusals = policy
                    .refusals()
                    .filter(|r| r.backend == backend)
                    .map(|r| (r.member.clone(), r.reason.clone()))
                    .collect();
                sink(&backend, placements.clone(), refusals, changed_at);
                self.sent.insert(backend, placements);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The manager's wake-up, with tokio's clock paused: time only moves when every task
    //! waits, so a handoff that needed the [`TICK`] would arrive a simulated second late.
    use super::*;
    use crate::control::model::MemberStatus;
    use crate::gossip::Vsn;
    use crate::policy::{BackendSelector, GuardConfig, Want};
    use tokio::sync::{mpsc, watch};
    use tokio::time::Instant;

    type Handoff = (String, Vec<Placement>, SystemTime, Instant);

    struct Rig {
        table: watch::Sender<MemberSnapshot>,
        handoffs: mpsc::UnboundedReceiver<Handoff>,
        members: Vec<Member>,
        map_updates: Arc<std::sync::atomic::AtomicUsize>,
        _synced: watch::Sender<bool>,
    }

    fn member(name: &str, ip: &str) -> Member {
        Member {
            name: name.into(),
            addr: ip.parse().unwrap(),
            port: 7946,
            tags: BTreeMap::from([("role".to_string(), "web".to_string())]),
            status: MemberStatus::Alive,
            suspect: false,
            vsn: Vsn::SERF,
        }
    }

    fn want(h: &Handoff, name: &str) -> Option<Placement> {
        h.1.iter().find(|p| p.name == name).cloned()
    }

    impl Rig {
        /// A manager loop over lb + three web members, synced; returns after the first
        /// evaluation's handoff.
        async fn start() -> (Rig, Handoff) {
            let members = vec![
                member("web1", "10.0.0.1"),
                member("web2", "10.0.0.2"),
                member("web3", "10.0.0.3"),
            ];
            let mut snap = MemberSnapshot::default();
            snap.advance(members.clone(), SystemTime::now());
            let (table, rx) = watch::channel(snap);
            let (synced, synced_rx) = watch::channel(true);
            let (tx, handoffs) = mpsc::unbounded_channel();
            let map_updates = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let counter = map_updates.clone();
            let ev = Evaluator {
                policy: Policy::new(PolicyConfig {
                    backends: vec![BackendSelector::parse("web").unwrap()],
                    allow_cidrs: vec![],
                    suspicion_drain: true,
                    guard: GuardConfig {
                        share: 1.0,
                        ..GuardConfig::default()
                    },
                }),
                shared: Arc::default(),
                sent: BTreeMap::new(),
            };
            tokio::spawn(evaluate_loop(
                ev,
                synced_rx,
                rx,
                move || {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                },
                move |b: &str,
                      p: Vec<Placement>,
                      _refusals: Vec<(String, String)>,
                      at: SystemTime| {
                    let _ = tx.send((b.to_string(), p, at, Instant::now()));
                },
            ));
            let mut rig = Rig {
                table,
                handoffs,
                members,
                map_updates,
                _synced: synced,
            };
            let first = rig.handoffs.recv().await.unwrap();
            (rig, first)
        }

        /// Publishes one new version of the table with `f` applied; returns its time.
        fn publish(&mut self, f: impl FnOnce(&mut Vec<Member>)) -> SystemTime {
            f(&mut self.members);
            let at = SystemTime::now();
            let list = self.members.clone();
            self.table.send_modify(|s| s.advance(list, at));
            at
        }

        /// Publishes the change and returns the handoff it caused, checking that it came
        /// with no simulated time passing and carries the change's publication time.
        async fn change(&mut self, f: impl FnOnce(&mut Vec<Member>)) -> Handoff {
            let published = Instant::now();
            let at = self.publish(f);
            let h = tokio::time::timeout(TICK / 2, self.handoffs.recv())
                .await
                .expect("the manager did not wake on the change")
                .unwrap();
            assert_eq!(h.3, published, "woke without waiting for a tick");
            assert_eq!(h.2, at, "measured from the change's publication");
            h
        }

        fn set(
            &mut self,
            name: &str,
            f: impl FnOnce(&mut Member),
        ) -> impl FnOnce(&mut Vec<Member>) {
            let name = name.to_string();
            move |ms: &mut Vec<Member>| f(ms.iter_mut().find(|m| m.name == name).unwrap())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_evaluation_places_every_selected_member() {
        let (_rig, first) = Rig::start().await;
        assert_eq!(first.0, "web");
        assert_eq!(first.1.len(), 3);
        assert!(first.1.iter().all(|p| p.want == Want::Ready));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leave_intent_wakes_the_manager_at_once() {
        let (mut rig, _) = Rig::start().await;
        let f = rig.set("web2", |m| m.status = MemberStatus::Leaving);
        let h = rig.change(f).await;
        assert_eq!(want(&h, "web2").unwrap().want, Want::Leave);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_wakes_the_manager_at_once() {
        let (mut rig, _) = Rig::start().await;
        let f = rig.set("web1", |m| m.status = MemberStatus::Failed);
        let h = rig.change(f).await;
        assert_eq!(want(&h, "web1").unwrap().want, Want::Drain, "in its grace");
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspicion_and_its_refutation_each_wake_the_manager_at_once() {
        let (mut rig, _) = Rig::start().await;
        let f = rig.set("web3", |m| m.suspect = true);
        let h = rig.change(f).await;
        assert_eq!(want(&h, "web3").unwrap().want, Want::Drain);
        let f = rig.set("web3", |m| m.suspect = false);
        let h = rig.change(f).await;
        assert_eq!(want(&h, "web3").unwrap().want, Want::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_change_wakes_the_manager_at_once() {
        let (mut rig, _) = Rig::start().await;
        let f = rig.set("web1", |m| m.addr = "10.0.0.91".parse().unwrap());
        let h = rig.change(f).await;
        assert_eq!(want(&h, "web1").unwrap().addr.to_string(), "10.0.0.91");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tag_change_wakes_the_manager_at_once() {
        let (mut rig, _) = Rig::start().await;
        let f = rig.set("web2", |m| {
            m.tags.insert("weight".into(), "7".into());
        });
        let h = rig.change(f).await;
        assert_eq!(want(&h, "web2").unwrap().weight, Some(7));
        let f = rig.set("web2", |m| {
            m.tags.insert("role".into(), "api".into());
        });
        let h = rig.change(f).await;
        assert!(want(&h, "web2").is_none(), "no longer selected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_wakes_the_manager_at_once_and_updates_the_maps() {
        let (mut rig, _) = Rig::start().await;
        let before = rig.map_updates.load(std::sync::atomic::Ordering::SeqCst);
        let h = rig.change(|ms| ms.push(member("web4", "10.0.0.4"))).await;
        assert_eq!(want(&h, "web4").unwrap().want, Want::Ready);
        let after = rig.map_updates.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(after, before + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_published_together_are_one_handoff_dated_from_the_first() {
        let (mut rig, _) = Rig::start().await;
        let first = rig.publish(|ms| ms.push(member("web4", "10.0.0.4")));
        rig.publish(|ms| ms.push(member("web5", "10.0.0.5")));
        rig.publish(|ms| ms.push(member("web6", "10.0.0.6")));
        let h = rig.handoffs.recv().await.unwrap();
        assert_eq!(h.2, first);
        assert_eq!(h.1.len(), 6, "the three joins in one handoff");
        let more = tokio::time::timeout(TICK * 3, rig.handoffs.recv()).await;
        assert!(more.is_err(), "nothing else to hand off: {more:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tick_still_applies_the_policys_own_deadlines() {
        let (mut rig, _) = Rig::start().await;
        let f = rig.set("web1", |m| m.status = MemberStatus::Failed);
        let failed_at = rig.change(f).await.3;
        // no further change: only the tick can end the failed grace
        let h = rig.handoffs.recv().await.unwrap();
        assert_eq!(want(&h, "web1").unwrap().want, Want::Failed);
        let waited = h.3 - failed_at;
        assert!(
            waited >= crate::policy::desired::FAILED_GRACE
                && waited <= crate::policy::desired::FAILED_GRACE + TICK,
            "{waited:?}"
        );
    }
}
