//! The HAProxy manager: membership → [`Policy`] → reconciler. One task owns the policy; it
//! wakes on every membership change (and once a second for the partition guard's clock),
//! coalesces a burst, evaluates, and hands each backend's desired members to the reconciler,
//! which plans, applies in one batched round trip, and reads back.
//!
//! Burst coalescing: after the first change the task waits until [`QUIET`] passes with no
//! further change (at most [`MAX_COALESCE`]), so a join storm is one evaluation while a
//! single change reaches HAProxy within milliseconds.
//!
//! Metrics: the manager registers its families ([`collector`]) and feeds the latency
//! histograms ([`latency`]) in the agent's registry.

pub mod alerts;
mod collector;
pub mod first_check;
mod latency;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::AgentConfig;
use crate::control::model::{MemberView, SlotView};
use crate::gossip::{Gossip, Member};
use crate::maps::{spawn_map_sync, MapSyncConfig, MapSyncHandle};
use crate::metrics::latency::Latency;
use crate::metrics::MetricsRegistry;
use crate::policy::{GuardAlert, MemberFacts, Placement, Policy, PolicyConfig, Refusal};
use crate::slots::{spawn_reconciler, ReconcilerConfig, ReconcilerHandle, ReconcilerStatus};
use alerts::{AlertBook, AlertKind};

/// A change is applied once no other change arrived for this long.
pub const QUIET: Duration = Duration::from_millis(3);
/// Longest a burst is coalesced before it is applied anyway.
pub const MAX_COALESCE: Duration = Duration::from_millis(30);
/// The guard's clock ticks this often even without membership changes.
pub const TICK: Duration = Duration::from_secs(1);

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
    notify: Notify,
    shared: Mutex<Shared>,
    reconciler: Mutex<Option<ReconcilerHandle>>,
    status: tokio::sync::watch::Receiver<ReconcilerStatus>,
    task: Mutex<Option<JoinHandle<()>>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
    synced: tokio::sync::watch::Sender<bool>,
    /// When the first membership change not evaluated yet arrived.
    changed_at: Mutex<Option<SystemTime>>,
    handoffs: latency::Pending,
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
            notify: Notify::new(),
            shared: Mutex::new(Shared::default()),
            reconciler: Mutex::new(Some(reconciler)),
            status,
            task: Mutex::new(None),
            watcher: Mutex::new(None),
            synced: tokio::sync::watch::channel(false).0,
            changed_at: Mutex::new(None),
            handoffs: latency::Pending::default(),
            maps,
        });
        let task = tokio::spawn(evaluate_loop(inner.clone(), policy, gossip));
        *lock(&inner.task) = Some(task);
        let watcher = tokio::spawn(latency::watch(
            inner.status.clone(),
            inner.handoffs.clone(),
            Latency::register(metrics),
        ));
        *lock(&inner.watcher) = Some(watcher);
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
        self.inner.notify.notify_one();
    }

    /// True once [`Manager::membership_synced`] was called.
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Membership changed: evaluate soon (and update the maps).
    pub fn membership_changed(&self) {
        lock(&self.inner.changed_at).get_or_insert_with(SystemTime::now);
        self.inner.notify.notify_one();
        if let Some(m) = &self.inner.maps {
            m.changed();
        }
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
        for task in [&self.inner.task, &self.inner.watcher] {
            if let Some(task) = lock(task).take() {
                task.abort();
            }
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

async fn evaluate_loop(inner: Arc<Inner>, mut policy: Policy, gossip: Gossip) {
    let mut sent: BTreeMap<String, Vec<Placement>> = BTreeMap::new();
    let mut synced = inner.synced.subscribe();
    if synced.wait_for(|s| *s).await.is_err() {
        return;
    }
    tracing::info!("membership known: managing HAProxy slots");
    loop {
        let changed = tokio::time::timeout(TICK, inner.notify.notified())
            .await
            .is_ok();
        if changed {
            let start = tokio::time::Instant::now();
            while start.elapsed() < MAX_COALESCE
                && tokio::time::timeout(QUIET, inner.notify.notified())
                    .await
                    .is_ok()
            {}
        }
        // when the change reached the agent: its gossip event, or now for a change the
        // manager's own clock makes (failed grace, guard hold) or one whose event is still
        // queued behind the evaluation
        let changed_at = lock(&inner.changed_at)
            .take()
            .unwrap_or_else(SystemTime::now);
        let facts: Vec<MemberFacts> = gossip.members().iter().map(facts).collect();
        let eval = policy.evaluate(Instant::now(), &facts);
        for r in &eval.new_refusals {
            tracing::warn!(member = %r.member, backend = %r.backend, reason = %r.reason, "member refused a slot");
        }
        let now = SystemTime::now();
        let mut shared = lock(&inner.shared);
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
        let reconciler = lock(&inner.reconciler);
        let Some(reconciler) = reconciler.as_ref() else {
            return;
        };
        for (backend, placements) in eval.placements {
            if sent.get(&backend) != Some(&placements) {
                // the log line of a member losing its slot names the refusal
                let refusals = policy
                    .refusals()
                    .filter(|r| r.backend == backend)
                    .map(|r| (r.member.clone(), r.reason.clone()))
                    .collect();
                reconciler.set_refusals(&backend, refusals);
                // recorded before the reconciler can apply it
                inner.handoffs.handed(&backend, changed_at);
                reconciler.set_desired(&backend, placements.clone());
                sent.insert(backend, placements);
            }
        }
    }
}
