//! The reconcile loop: one tokio task owns every [`Book`], reads HAProxy, plans, applies the
//! plan in one batched round trip, reads back to verify, and repeats on a timer. It repairs
//! drift (a slot changed by hand, HAProxy restarted or reloaded and lost its runtime state,
//! detected through `show info` pid and start time), keeps extra members in a queue, and
//! retries an unreachable socket with backoff while nothing else stops.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::control::model::SlotView;
use crate::haproxy::{Client, Command};
use crate::metrics::latency::Latency;

use super::admission::{Admission, Admit, PROBE_RETRY};
use super::book::{Book, DesiredMember, TimerRequest};
use super::discovery::{discover, slot_state, template_port, Observed};
use super::planner::{plan_slot, PlanContext, Reason, Target};

/// How long a slot that waits (for its first check, or for sessions to end) is polled at
/// the fast-poll rate before falling back to the resync interval.
const FAST_POLL_FOR: Duration = Duration::from_secs(10);

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// HAProxy runtime API (admin level): unix socket path or `IP:PORT`.
    pub socket: String,
    /// Backends to manage.
    pub backends: Vec<String>,
    /// How long a leaving member's slot drains before it is forced to maint.
    pub drain_timeout: Duration,
    /// Full read-back and repair interval when nothing is pending.
    pub resync_interval: Duration,
    /// Poll interval while a slot waits for its first health check or for sessions to end.
    pub fast_poll: Duration,
    /// Timeout of one socket exchange.
    pub timeout: Duration,
    /// Largest retry delay when the socket is unreachable.
    pub max_backoff: Duration,
    /// Address of a free slot (the `server-template` placeholder).
    pub placeholder: IpAddr,
    /// Where "member change → runtime command" and "command → confirm" are recorded
    /// (`None`: not measured).
    pub latency: Option<Latency>,
    /// Admission of each backend (absent: `check` with a TCP probe).
    pub admission: HashMap<String, Admission>,
}

impl ReconcilerConfig {
    /// Defaults: drain 30 s, resync 1 s, fast poll 50 ms, timeout 3 s, backoff up to 1 s,
    /// placeholder 127.0.0.1.
    pub fn new(socket: impl Into<String>, backends: Vec<String>) -> ReconcilerConfig {
        ReconcilerConfig {
            socket: socket.into(),
            backends,
            drain_timeout: Duration::from_secs(30),
            resync_interval: Duration::from_secs(1),
            fast_poll: Duration::from_millis(50),
            timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(1),
            placeholder: IpAddr::V4(Ipv4Addr::LOCALHOST),
            latency: None,
            admission: HashMap::new(),
        }
    }
}

/// What the reconciler reports (a snapshot; cheap to clone).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcilerStatus {
    /// The first full reconcile is done: HAProxy read, every backend given its desired
    /// members with [`ReconcilerHandle::set_desired`], first plan applied.
    pub ready: bool,
    /// Every slot of every managed backend, member filled in.
    pub slots: Vec<SlotView>,
    /// Members waiting for a slot, per backend.
    pub queue: BTreeMap<String, Vec<String>>,
    /// HAProxy worker pid.
    pub haproxy_pid: Option<u32>,
    /// HAProxy uptime (seconds) at the last read.
    pub haproxy_uptime_sec: Option<u64>,
    /// Times a new HAProxy process (restart/reload) was detected.
    pub haproxy_restarts: u64,
    /// Last time commands were applied.
    pub last_apply: Option<SystemTime>,
    /// Batches applied.
    pub applies: u64,
    /// Commands HAProxy refused, plus failed exchanges.
    pub apply_errors: u64,
    /// Slots found changed behind the agent's back and put back.
    pub drift_repairs: u64,
    /// Passes done.
    pub passes: u64,
    /// Last error, if the last pass failed.
    pub last_error: Option<String>,
    /// Time the last filled slot spent in drain waiting for its first health check (ms).
    pub check_gate_last_ms: Option<u64>,
    /// Longest such wait seen (ms).
    pub check_gate_max_ms: Option<u64>,
}

/// The agent's probe of a member address.
#[derive(Debug, Default)]
struct ProbeState {
    /// The last probe passed.
    ok: bool,
    /// A probe runs now.
    running: bool,
    /// When the last probe ended.
    ended: Option<Instant>,
}

enum Msg {
    Desired(String, Vec<DesiredMember>, Option<SystemTime>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the reconciler task.
#[derive(Debug)]
pub struct ReconcilerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    status: watch::Receiver<ReconcilerStatus>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// Starts the reconciler task (needs a tokio runtime).
pub fn spawn_reconciler(cfg: ReconcilerConfig) -> ReconcilerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stx, srx) = watch::channel(ReconcilerStatus::default());
    let task = tokio::spawn(run(cfg, rx, stx));
    ReconcilerHandle {
        tx,
        status: srx,
        task,
    }
}

impl ReconcilerHandle {
    /// Replaces the desired members of `backend`. Cheap; bursts coalesce; applied within
    /// milliseconds.
    pub fn set_desired(&self, backend: &str, members: Vec<DesiredMember>) {
        let _ = self
            .tx
            .send(Msg::Desired(backend.to_string(), members, None));
    }

    /// [`ReconcilerHandle::set_desired`] for a membership change published at `changed`:
    /// the first pass that sends `backend` commands after it records `answered − changed`
    /// as the change's "member change → runtime command" latency.
    pub fn set_desired_at(&self, backend: &str, members: Vec<DesiredMember>, changed: SystemTime) {
        let _ = self
            .tx
            .send(Msg::Desired(backend.to_string(), members, Some(changed)));
    }

    /// The latest status.
    pub fn status(&self) -> ReconcilerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status update.
    pub fn subscribe(&self) -> watch::Receiver<ReconcilerStatus> {
        self.status.clone()
    }

    /// Stops the task. HAProxy keeps its slots as they are.
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

struct Timer {
    at: Instant,
    backend: String,
    slot: String,
    token: u64,
}

struct State {
    cfg: ReconcilerConfig,
    client: Client,
    desired: HashMap<String, Vec<DesiredMember>>,
    books: HashMap<String, Book>,
    tports: HashMap<String, u16>,
    timers: Vec<Timer>,
    converged: HashMap<(String, String), Target>,
    gate: HashMap<(String, String), Instant>,
    /// Per backend, the earliest membership change not yet turned into commands.
    changes: HashMap<String, SystemTime>,
    /// The agent's probes (`--admit check`), by member address.
    probes: HashMap<SocketAddr, ProbeState>,
    probe_tx: mpsc::UnboundedSender<(SocketAddr, Result<(), String>)>,
    waiting_since: HashMap<(String, String), Instant>,
    proc_id: Option<(u32, Option<u64>)>,
    status: ReconcilerStatus,
    backoff: Duration,
    next_pass: Instant,
}

async fn run(
    cfg: ReconcilerConfig,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    stx: watch::Sender<ReconcilerStatus>,
) {
    let client = Client::new(&cfg.socket).with_timeout(cfg.timeout);
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let mut st = State {
        books: cfg
            .backends
            .iter()
            .map(|b| (b.clone(), Book::new()))
            .collect(),
        backoff: cfg.fast_poll,
        cfg,
        client,
        desired: HashMap::new(),
        tports: HashMap::new(),
        timers: Vec::new(),
        converged: HashMap::new(),
        gate: HashMap::new(),
        changes: HashMap::new(),
        probes: HashMap::new(),
        probe_tx,
        waiting_since: HashMap::new(),
        proc_id: None,
        status: ReconcilerStatus::default(),
        next_pass: Instant::now(),
    };
    loop {
        let wake = st
            .timers
            .iter()
            .map(|t| t.at)
            .chain([st.next_pass])
            .min()
            .unwrap_or(st.next_pass);
        tokio::select! {
            msg = rx.recv() => {
                let mut msg = msg;
                loop {
                    match msg {
                        None => return,
                        Some(Msg::Shutdown(done)) => {
                            let _ = done.send(());
                            return;
                        }
                        Some(Msg::Desired(b, m, changed)) => {
                            if !st.books.contains_key(&b) {
                                st.books.insert(b.clone(), Book::new());
                                st.cfg.backends.push(b.clone());
                            }
                            if let Some(t) = changed {
                                let e = st.changes.entry(b.clone()).or_insert(t);
                                *e = (*e).min(t);
                            }
                            st.desired.insert(b, m);
                        }
                    }
                    match rx.try_recv() {
                        Ok(m) => msg = Some(m),
                        Err(_) => break,
                    }
                }
                st.pass(&|| !rx.is_empty() || !probe_rx.is_empty()).await;
                let _ = stx.send(st.status.clone());
            }
            Some((addr, result)) = probe_rx.recv() => {
                let p = st.probes.entry(addr).or_default();
                p.running = false;
                p.ended = Some(Instant::now());
                p.ok = result.is_ok();
                match result {
                    Ok(()) => tracing::debug!(%addr, "admission probe passed"),
                    Err(e) => tracing::info!(%addr, error = %e, "admission probe failed; the slot stays out of rotation"),
                }
                // the probes of a burst finish together: one pass for all that are in
                while let Ok((addr, result)) = probe_rx.try_recv() {
                    let p = st.probes.entry(addr).or_default();
                    p.running = false;
                    p.ended = Some(Instant::now());
                    p.ok = result.is_ok();
                }
                st.pass(&|| !rx.is_empty() || !probe_rx.is_empty()).await;
                let _ = stx.send(st.status.clone());
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                st.fire_timers();
                // (before set_desired, a pass only reads HAProxy: every backend without
                // desired members is skipped in `pass`, so nothing is drained)
                st.pass(&|| !rx.is_empty() || !probe_rx.is_empty()).await;
                let _ = stx.send(st.status.clone());
            }
        }
    }
}

impl State {
    fn fire_timers(&mut self) {
        let now = Instant::now();
        let (due, rest): (Vec<Timer>, Vec<Timer>) =
            self.timers.drain(..).partition(|t| t.at <= now);
        self.timers = rest;
        for t in due {
            let fired = self
                .books
                .get_mut(&t.backend)
                .is_some_and(|b| b.on_deadline(&t.slot, t.token));
            if fired {
                tracing::info!(backend = %t.backend, slot = %t.slot, "drain deadline passed");
            } else {
                tracing::debug!(backend = %t.backend, slot = %t.slot, "stale drain deadline ignored");
            }
        }
    }

    fn fail(&mut self, what: String) {
        tracing::warn!(error = %what, retry_ms = self.backoff.as_millis() as u64, "HAProxy reconcile failed");
        self.status.last_error = Some(what);
        self.status.apply_errors += 1;
        self.next_pass = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.max_backoff);
    }

    async fn observe(&mut self) -> Option<Observed> {
        let snap = match self.client.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                self.fail(e.to_string());
                return None;
            }
        };
        let obs = match discover(&snap) {
            Ok(o) => o,
            Err(e) => {
                self.fail(e.to_string());
                return None;
            }
        };
        if obs.stopping {
            self.fail(format!(
                "HAProxy worker {} is stopping (old worker after a reload)",
                obs.pid
            ));
            return None;
        }
        let id = (obs.pid, obs.start_time_sec);
        if let Some(prev) = self.proc_id {
            if prev != id {
                tracing::warn!(
                    old_pid = prev.0,
                    new_pid = obs.pid,
                    "HAProxy restarted or reloaded; re-pushing every slot"
                );
                self.status.haproxy_restarts += 1;
            }
        }
        self.proc_id = Some(id);
        self.status.haproxy_pid = Some(obs.pid);
        self.status.haproxy_uptime_sec = Some(obs.uptime_sec);
        Some(obs)
    }

    /// One reconcile pass: read HAProxy, plan, apply in one batch, read back. `more` says
    /// whether other changes wait already (desired members, probe results): then the
    /// read-back is left to the next pass, which reads HAProxy first anyway, so a burst
    /// costs two runtime-API exchanges per batch instead of three.
    async fn pass(&mut self, more: &(dyn Fn() -> bool + Sync)) {
        self.status.passes += 1;
        let Some(obs) = self.observe().await else {
            return;
        };
        let now = Instant::now();
        let placeholder = self.cfg.placeholder;
        let mut cmds: Vec<Command> = Vec::new();
        let mut pending = false;
        let mut errors: Vec<String> = Vec::new();
        let mut waiting_for_desired = false;
        // backends planned this pass, and those of them that got commands
        let mut planned: Vec<String> = Vec::new();
        let mut commanded: std::collections::BTreeSet<String> = Default::default();
        for b in self.cfg.backends.clone() {
            let Some(slots) = obs.backends.get(&b) else {
                errors.push(format!("backend {b:?} has no servers in HAProxy"));
                continue;
            };
            if !self.tports.contains_key(&b) {
                if let Some(p) = template_port(slots, placeholder) {
                    self.tports.insert(b.clone(), p);
                }
            }
            let tport = self.tports.get(&b).copied();
            // nothing is changed in a backend before the agent said what it wants there: a
            // first pass with an empty list would drain every member after an agent restart
            let Some(desired) = self.desired.get(&b).cloned() else {
                waiting_for_desired = true;
                continue;
            };
            let book = self.books.entry(b.clone()).or_default();
            for slot in book.release_done(slots) {
                tracing::info!(backend = %b, slot = %slot, "slot freed after graceful leave");
            }
            let timers: Vec<TimerRequest> = book.update(
                &desired,
                slots,
                placeholder,
                tport,
                now,
                self.cfg.drain_timeout,
            );
            for t in timers {
                self.timers.push(Timer {
                    at: t.at,
                    backend: b.clone(),
                    slot: t.slot,
                    token: t.token,
                });
            }
            if !book.unplaceable().is_empty() {
                errors.push(format!(
                    "backend {b}: no port for {:?} (no `port` tag and no template port)",
                    book.unplaceable()
                ));
            }
            let Some(tport) = tport else { continue };
            planned.push(b.clone());
            let ctx = PlanContext {
                placeholder,
                template_port: tport,
            };
            let targets = self.admit(&b, self.books[&b].targets(slots), slots, now);
            let book = &self.books[&b];
            // targets come in the order of `slots`
            for ((slot, target), o) in targets.into_iter().zip(slots.iter()) {
                let (c, reason) = plan_slot(&b, &target, o, &ctx);
                let key = (b.clone(), slot.clone());
                if c.is_empty() {
                    if matches!(target, Target::Leave { .. })
                        || matches!(target, Target::Serve { drain: false, .. }
                            if o.admin != crate::haproxy::AdminState::Ready)
                    {
                        // waiting for a first check or for sessions to end: poll fast for a
                        // while, then at the resync interval (a backend that never passes
                        // its check must not be polled at 20 Hz forever)
                        let since = *self.waiting_since.entry(key).or_insert(now);
                        if now.duration_since(since) < FAST_POLL_FOR {
                            pending = true;
                        }
                    } else {
                        self.waiting_since.remove(&key);
                        self.converged.insert(key, target);
                    }
                    continue;
                }
                pending = true;
                commanded.insert(b.clone());
                if !matches!(target, Target::Leave { .. })
                    && self.converged.get(&key) == Some(&target)
                {
                    self.status.drift_repairs += 1;
                    tracing::warn!(backend = %b, slot = %slot, observed = %o.status, "drift: slot changed outside the agent; repairing");
                }
                self.converged.remove(&key);
                self.waiting_since.remove(&key);
                let reason = reason.unwrap_or(Reason::Assign);
                let awaits_check = matches!(target, Target::Serve { drain: false, .. })
                    && c.iter().any(|c| {
                        matches!(
                            c,
                            Command::SetState {
                                state: crate::haproxy::AdminState::Drain,
                                ..
                            }
                        )
                    });
                if awaits_check {
                    self.gate.insert(key.clone(), now);
                }
                if matches!(reason, Reason::Ready) {
                    if let Some(t0) = self.gate.remove(&key) {
                        let ms = now.duration_since(t0).as_millis() as u64;
                        self.status.check_gate_last_ms = Some(ms);
                        self.status.check_gate_max_ms =
                            Some(self.status.check_gate_max_ms.unwrap_or(0).max(ms));
                    }
                }
                let addr = match &target {
                    Target::Serve { addr, port, .. } | Target::Leave { addr, port, .. } => {
                        format!("{}", std::net::SocketAddr::new(*addr, *port))
                    }
                    Target::Empty => "-".into(),
                };
                tracing::info!(
                    member = book.member_of(&slot).unwrap_or("-"),
                    backend = %b,
                    slot = %slot,
                    addr = %addr,
                    reason = reason.as_str(),
                    commands = c.len(),
                    "slot change"
                );
                cmds.extend(c);
            }
        }
        let mut final_obs = obs;
        let mut refused = false;
        if !cmds.is_empty() {
            match self.client.run(&cmds).await {
                Ok(results) => {
                    let answered = SystemTime::now();
                    self.status.applies += 1;
                    self.status.last_apply = Some(answered);
                    self.record_change_latency(&commanded, answered);
                    for (c, r) in cmds.iter().zip(results) {
                        if let Err(e) = r {
                            refused = true;
                            self.status.apply_errors += 1;
                            tracing::warn!(command = %c, error = %e, "HAProxy refused a command");
                            errors.push(format!("`{c}`: {e}"));
                        }
                    }
                }
                Err(e) => {
                    self.fail(e.to_string());
                    return;
                }
            }
            // read back and verify every slot (unless the next pass follows at once)
            if more() {
                self.next_pass = Instant::now();
                self.refresh_views(&final_obs);
                for b in &planned {
                    self.changes.remove(b);
                }
                return;
            }
            if let Some(o) = self.observe().await {
                let mut off = 0;
                for b in &self.cfg.backends {
                    let (Some(slots), Some(tport)) = (o.backends.get(b), self.tports.get(b)) else {
                        continue;
                    };
                    let ctx = PlanContext {
                        placeholder,
                        template_port: *tport,
                    };
                    let targets = self.admitted(b, self.books[b].targets(slots));
                    for ((slot, target), s) in targets.into_iter().zip(slots.iter()) {
                        let (c, r) = plan_slot(b, &target, s, &ctx);
                        if super::planner::satisfied(&target, s, &ctx) {
                            self.converged
                                .insert((b.clone(), slot.clone()), target.clone());
                        }
                        // waiting for a check or for sessions is expected; anything else
                        // is a mismatch the next pass repairs
                        if !c.is_empty() && !matches!(r, Some(Reason::Ready | Reason::Release)) {
                            off += 1;
                            tracing::warn!(backend = %b, slot = %slot, still = ?c.iter().map(|c| c.to_string()).collect::<Vec<_>>(), "read-back differs from plan");
                        }
                    }
                }
                if off > 0 {
                    errors.push(format!("{off} slot(s) differ after apply; retrying"));
                } else if let (Some(l), Some(answered)) =
                    (&self.cfg.latency, self.status.last_apply)
                {
                    let d = SystemTime::now()
                        .duration_since(answered)
                        .unwrap_or_default();
                    for b in &commanded {
                        l.observe_command_to_confirm(b, d);
                    }
                }
                final_obs = o;
            } else {
                return;
            }
        }
        // a change that needed no command in its backend is not measured
        for b in &planned {
            self.changes.remove(b);
        }
        self.status.last_error = if errors.is_empty() {
            None
        } else {
            Some(errors.join("; "))
        };
        // ready once every backend got its desired members and was reconciled once
        if !waiting_for_desired {
            self.status.ready = true;
        }
        self.prune_probes(&final_obs);
        self.refresh_views(&final_obs);
        let delay = if refused {
            // refused commands (e.g. a socket without admin level): retry with backoff
            // rather than at the fast-poll rate
            let d = self.backoff;
            self.backoff = (self.backoff * 2).min(self.cfg.max_backoff);
            d
        } else {
            self.backoff = self.cfg.fast_poll;
            if pending {
                self.cfg.fast_poll
            } else {
                self.cfg.resync_interval
            }
        };
        self.next_pass = Instant::now() + delay;
    }

    /// `targets` with `admitted` set where the backend's admission allows `ready` before
    /// HAProxy's first check: always in `gossip` mode; in `check` mode once the agent's probe
    /// of the address passed.
    fn admitted(&self, backend: &str, mut targets: Vec<(String, Target)>) -> Vec<(String, Target)> {
        let mode = self.admission(backend).mode;
        for (_, t) in &mut targets {
            if let Target::Serve {
                addr,
                port,
                drain: false,
                admitted,
                ..
            } = t
            {
                *admitted = match mode {
                    Admit::Gossip => true,
                    Admit::Check => self
                        .probes
                        .get(&SocketAddr::new(*addr, *port))
                        .is_some_and(|p| p.ok),
                };
            }
        }
        targets
    }

    /// [`State::admitted`], and in `check` mode starts a probe of every member that waits
    /// out of rotation (none running, the last failed more than [`PROBE_RETRY`] ago).
    fn admit(
        &mut self,
        backend: &str,
        targets: Vec<(String, Target)>,
        slots: &[super::discovery::ObservedSlot],
        now: Instant,
    ) -> Vec<(String, Target)> {
        let targets = self.admitted(backend, targets);
        let admission = self.admission(backend).clone();
        if admission.mode != Admit::Check || admission.probe == super::admission::Probe::Haproxy {
            return targets;
        }
        for ((_, t), o) in targets.iter().zip(slots) {
            let Target::Serve {
                addr,
                port,
                drain: false,
                admitted: false,
                ..
            } = t
            else {
                continue;
            };
            if o.admin == crate::haproxy::AdminState::Ready && o.addr == Some(*addr) {
                continue;
            }
            let a = SocketAddr::new(*addr, *port);
            let p = self.probes.entry(a).or_default();
            if p.running || p.ended.is_some_and(|e| now.duration_since(e) < PROBE_RETRY) {
                continue;
            }
            p.running = true;
            let (tx, probe) = (self.probe_tx.clone(), admission.probe.clone());
            tokio::spawn(async move {
                let _ = tx.send((a, super::admission::probe(a, &probe).await));
            });
        }
        targets
    }

    fn admission(&self, backend: &str) -> &Admission {
        static DEFAULT: std::sync::OnceLock<Admission> = std::sync::OnceLock::new();
        self.cfg
            .admission
            .get(backend)
            .unwrap_or_else(|| DEFAULT.get_or_init(Admission::default))
    }

    /// Forgets the probes of addresses no slot serves any more.
    fn prune_probes(&mut self, obs: &Observed) {
        let mut live = std::collections::HashSet::new();
        for b in &self.cfg.backends {
            if let Some(slots) = obs.backends.get(b) {
                for (_, t) in self.books[b].targets(slots) {
                    if let Target::Serve { addr, port, .. } = t {
                        live.insert(SocketAddr::new(addr, port));
                    }
                }
            }
        }
        self.probes.retain(|a, p| p.running || live.contains(a));
    }

    /// The commands of `commanded` backends were answered at `answered`: each backend's
    /// pending membership change is measured once.
    fn record_change_latency(
        &mut self,
        commanded: &std::collections::BTreeSet<String>,
        answered: SystemTime,
    ) {
        for b in commanded {
            if let Some(changed) = self.changes.remove(b) {
                if let Some(l) = &self.cfg.latency {
                    l.observe_change_to_command(
                        b,
                        answered.duration_since(changed).unwrap_or_default(),
                    );
                }
            }
        }
    }

    fn refresh_views(&mut self, obs: &Observed) {
        let mut views = Vec::new();
        let mut queue = BTreeMap::new();
        for b in &self.cfg.backends {
            let book = &self.books[b];
            queue.insert(b.clone(), book.queue().to_vec());
            let Some(slots) = obs.backends.get(b) else {
                continue;
            };
            for s in slots {
                views.push(SlotView {
                    backend: b.clone(),
                    slot: s.name.clone(),
                    member: book.member_of(&s.name).map(str::to_string),
                    addr: if s.is_empty_slot(self.cfg.placeholder) {
                        None
                    } else {
                        s.addr_port()
                    },
                    state: slot_state(s.admin),
                    haproxy_status: s.status.to_string(),
                });
            }
        }
        self.status.slots = views;
        self.status.queue = queue;
    }
}
