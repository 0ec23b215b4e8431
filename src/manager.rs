//! The HAProxy manager: membership → [`Policy`] → reconciler. One task owns the policy; it
//! wakes on every membership change (and once a second for the partition guard's clock),
//! coalesces a burst, evaluates, and hands each backend's desired members to the reconciler,
//! which plans, applies in one batched round trip, and reads back.
//!
//! Burst coalescing: after the first change the task waits until [`QUIET`] passes with no
//! further change (at most [`MAX_COALESCE`]), so a join storm is one evaluation while a
//! single change reaches HAProxy within milliseconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::AgentConfig;
use crate::control::metrics::{Kind, Metrics};
use crate::control::model::{MemberView, SlotView};
use crate::gossip::{Gossip, Member};
use crate::maps::{spawn_map_sync, MapSyncConfig, MapSyncHandle};
use crate::policy::{GuardAlert, MemberFacts, Placement, Policy, PolicyConfig, Refusal};
use crate::slots::{spawn_reconciler, ReconcilerConfig, ReconcilerHandle, ReconcilerStatus};

/// A change is applied once no other change arrived for this long.
pub const QUIET: Duration = Duration::from_millis(3);
/// Longest a burst is coalesced before it is applied anyway.
pub const MAX_COALESCE: Duration = Duration::from_millis(30);
/// The guard's clock ticks this often even without membership changes.
pub const TICK: Duration = Duration::from_secs(1);

/// An alert raised by the partition guard, kept for `haserf status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    /// When.
    pub at: SystemTime,
    /// Backend.
    pub backend: String,
    /// What happened.
    pub message: String,
}

#[derive(Debug, Default)]
struct Shared {
    evaluations: u64,
    suspicion_drains: u64,
    refusals: Vec<Refusal>,
    holds: BTreeMap<String, Vec<String>>,
    alerts: Vec<Alert>,
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
    synced: tokio::sync::watch::Sender<bool>,
    maps: Option<MapSyncHandle>,
}

const MAX_ALERTS: usize = 32;

impl Manager {
    /// Starts the reconciler and the evaluation task for `cfg`'s backends. Needs
    /// `cfg.haproxy_socket`.
    pub fn start(cfg: &AgentConfig, gossip: Gossip) -> Option<Manager> {
        let socket = cfg.haproxy_socket.clone()?;
        let backends: Vec<String> = cfg.backends.iter().map(|b| b.backend.clone()).collect();
        let mut rcfg = ReconcilerConfig::new(socket.clone(), backends.clone());
        rcfg.drain_timeout = cfg.drain_timeout;
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
            synced: tokio::sync::watch::channel(false).0,
            maps,
        });
        let task = tokio::spawn(evaluate_loop(inner.clone(), policy, gossip));
        *lock(&inner.task) = Some(task);
        Some(Manager { inner })
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

    /// Waits until the reconciler reports ready.
    pub async fn wait_ready(&self) {
        let mut rx = self.inner.status.clone();
        let _ = rx.wait_for(|s| s.ready).await;
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
            "applies": st.applies,
            "apply_errors": st.apply_errors,
            "drift_repairs": st.drift_repairs,
            "last_error": st.last_error,
            "check_gate_last_ms": st.check_gate_last_ms,
            "check_gate_max_ms": st.check_gate_max_ms,
            "evaluations": shared.evaluations,
            "suspicion_drains": shared.suspicion_drains,
            "refused": shared.refusals,
            "alerts": shared.alerts,
            "maps": self.inner.maps.as_ref().map(MapSyncHandle::status).unwrap_or_default(),
        })
    }

    /// Adds the manager's families to a metrics document.
    pub fn metrics(&self, m: &mut Metrics) {
        let st = self.reconciler_status();
        let shared = lock(&self.inner.shared);
        let mut used = Vec::new();
        let mut free = Vec::new();
        let mut queued = Vec::new();
        for b in &self.inner.backends {
            let slots: Vec<&SlotView> = st.slots.iter().filter(|s| &s.backend == b).collect();
            let u = slots.iter().filter(|s| s.member.is_some()).count();
            used.push((vec![("backend", b.clone())], u as f64));
            free.push((vec![("backend", b.clone())], (slots.len() - u) as f64));
            let q = st.queue.get(b).map_or(0, Vec::len);
            queued.push((vec![("backend", b.clone())], q as f64));
        }
        m.family(
            "haserf_slots_used",
            "Slots holding a member.",
            Kind::Gauge,
            &used,
        );
        m.family(
            "haserf_slots_free",
            "Slots free for a member.",
            Kind::Gauge,
            &free,
        );
        m.family(
            "haserf_queue_length",
            "Members waiting for a free slot.",
            Kind::Gauge,
            &queued,
        );
        m.single(
            "haserf_ready",
            "1 once the first full reconcile is done.",
            Kind::Gauge,
            f64::from(u8::from(st.ready)),
        );
        m.single(
            "haserf_applies_total",
            "Batches of runtime commands applied.",
            Kind::Counter,
            st.applies as f64,
        );
        m.single(
            "haserf_apply_errors_total",
            "Runtime commands refused or failed exchanges.",
            Kind::Counter,
            st.apply_errors as f64,
        );
        m.single(
            "haserf_drift_repairs_total",
            "Slots found changed behind the agent's back and repaired.",
            Kind::Counter,
            st.drift_repairs as f64,
        );
        m.single(
            "haserf_haproxy_restarts_total",
            "New HAProxy processes detected.",
            Kind::Counter,
            st.haproxy_restarts as f64,
        );
        m.single(
            "haserf_suspicion_drains_total",
            "Members drained because they were suspected.",
            Kind::Counter,
            shared.suspicion_drains as f64,
        );
        m.single(
            "haserf_refused_members",
            "Members currently refused a slot.",
            Kind::Gauge,
            shared.refusals.len() as f64,
        );
        if let Some(maps) = &self.inner.maps {
            let st = maps.status();
            let label = |s: &crate::maps::MapStatus| vec![("map", s.kind.clone())];
            let fam = |f: fn(&crate::maps::MapStatus) -> f64| -> Vec<(Vec<(&str, String)>, f64)> {
                st.iter().map(|s| (label(s), f(s))).collect()
            };
            m.family(
                "haserf_map_entries",
                "Entries an HAProxy map kept by the agent should hold.",
                Kind::Gauge,
                &fam(|s| s.entries as f64),
            );
            m.family(
                "haserf_map_in_sync",
                "1 when HAProxy's copy of the map was read back equal to the desired entries.",
                Kind::Gauge,
                &fam(|s| f64::from(u8::from(s.in_sync))),
            );
            m.family(
                "haserf_map_commands_total",
                "Runtime commands sent to keep the map.",
                Kind::Counter,
                &fam(|s| s.commands as f64),
            );
            m.family(
                "haserf_map_file_writes_total",
                "Times the map file was rewritten.",
                Kind::Counter,
                &fam(|s| s.file_writes as f64),
            );
            m.family(
                "haserf_map_errors_total",
                "Failed exchanges, refused commands and failed file writes for the map.",
                Kind::Counter,
                &fam(|s| s.errors as f64),
            );
        }
        m.single(
            "haserf_partition_guard_holding",
            "Backends whose partition guard holds members.",
            Kind::Gauge,
            shared.holds.len() as f64,
        );
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
        let facts: Vec<MemberFacts> = gossip.members().iter().map(facts).collect();
        let eval = policy.evaluate(Instant::now(), &facts);
        for r in &eval.new_refusals {
            tracing::warn!(member = %r.member, backend = %r.backend, reason = %r.reason, "member refused a slot");
        }
        let mut alerts = Vec::new();
        for (backend, alert) in &eval.alerts {
            let message = match alert {
                GuardAlert::Holding(names) => {
                    tracing::error!(%backend, members = ?names, hold = ?policy.config().guard.hold,
                        "partition guard: many members failed at once; keeping them in rotation");
                    format!(
                        "holding {} failed members in rotation: {}",
                        names.len(),
                        names.join(", ")
                    )
                }
                GuardAlert::Recovered => {
                    tracing::warn!(%backend, "partition guard: held members are back");
                    "held members recovered".to_string()
                }
                GuardAlert::Released(names) => {
                    tracing::warn!(%backend, members = ?names, "partition guard: hold time passed; removing failed members");
                    format!("hold time passed; removing {}", names.join(", "))
                }
            };
            alerts.push(Alert {
                at: SystemTime::now(),
                backend: backend.clone(),
                message,
            });
        }
        {
            let mut shared = lock(&inner.shared);
            shared.evaluations += 1;
            shared.suspicion_drains = policy.suspicion_drains();
            shared.refusals = policy.refusals().cloned().collect();
            shared.holds = policy.guard_holds();
            shared.alerts.extend(alerts);
            let excess = shared.alerts.len().saturating_sub(MAX_ALERTS);
            shared.alerts.drain(..excess);
        }
        let reconciler = lock(&inner.reconciler);
        let Some(reconciler) = reconciler.as_ref() else {
            return;
        };
        for (backend, placements) in eval.placements {
            if sent.get(&backend) != Some(&placements) {
                reconciler.set_desired(&backend, placements.clone());
                sent.insert(backend, placements);
            }
        }
    }
}
