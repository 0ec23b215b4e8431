//! The reconcile loop: one tokio task owns every [`Book`], reads HAProxy, plans, applies the
//! plan in one batched round trip, reads back to verify, and repeats on a timer. It repairs
//! drift (a slot changed by hand, HAProxy restarted or reloaded and lost its runtime state,
//! detected through `show info` pid and start time), keeps extra members in a queue, and
//! retries an unreachable socket with backoff while nothing else stops.
//!
//! Convergence is an invariant: a managed backend that is missing or has no template is a
//! backend error (not ready, nothing touched); a command HAProxy refuses is remembered with
//! the slot's target and not sent again until the target changes or HAProxy restarts; a
//! slot whose agent-check drained or disabled it after haserf put it in service is left to
//! the agent. Once converged, passes only read.

mod apply;
mod gate;
mod views;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::control::model::SlotView;
use crate::haproxy::{Client, Command};
use crate::metrics::latency::Latency;
use crate::repeats::{Repeats, Verdict};

use super::admission::{Admission, Admit, PROBE_RETRY};
use super::book::Cause;
use super::book::{Book, DesiredMember, TimerRequest};
use super::discovery::{discover, slot_state, template_placeholder, template_port, Observed};
use super::planner::{agent_holds, plan_slot, PlanContext, Reason, Target};
use super::state_file::StateFile;

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
    /// HAProxy's server-state file to keep (`--server-state-file`), see [`super::state_file`].
    pub server_state_file: Option<std::path::PathBuf>,
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
            server_state_file: None,
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
    /// Managed backends that cannot be managed, with the reason: missing in HAProxy, no
    /// `server-template`, or a template haserf refuses (FQDN placeholder). The agent is
    /// not ready while this is not empty.
    pub backend_errors: BTreeMap<String, String>,
    /// Commands HAProxy refused for a slot's current target; not retried until the
    /// target changes (another member, address, port, weight or state) or HAProxy restarts.
    pub refused_commands: Vec<RefusedCommand>,
    /// Time the last filled slot spent in drain waiting for its first health check (ms).
    pub check_gate_last_ms: Option<u64>,
    /// Longest such wait seen (ms).
    pub check_gate_max_ms: Option<u64>,
    /// Filled slots still in drain, waiting for their first passing health check.
    pub awaiting_first_check: Vec<FirstCheckWait>,
    /// Server-state files written (`--server-state-file`).
    pub server_state_writes: u64,
    /// Last failed server-state file write, if the last one failed.
    pub server_state_error: Option<String>,
}

/// A filled slot waiting for its first passing health check (HAProxy keeps it in drain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirstCheckWait {
    /// Backend.
    pub backend: String,
    /// Slot (server name).
    pub slot: String,
    /// Member put in it.
    pub member: String,
    /// How long it has waited (since the agent filled the slot), in milliseconds.
    pub waited_ms: u64,
}

/// A runtime command HAProxy refused, as `haserf status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedCommand {
    /// Backend.
    pub backend: String,
    /// Slot (server) name.
    pub slot: String,
    /// Member the command was for, if any.
    pub member: Option<String>,
    /// The command line.
    pub command: String,
    /// HAProxy's reply.
    pub reply: String,
}

/// The refused commands of one slot and the target they were for.
#[derive(Debug, Clone)]
struct Refusals {
    target: Target,
    commands: Vec<RefusedCommand>,
}

/// `target` as refusals remember it: whether the slot may skip HAProxy's first check
/// (`admitted`, which flips when the agent's probe passes) does not change what HAProxy
/// refused, so it is not part of the key.
fn refusal_target(target: &Target) -> Target {
    let mut t = target.clone();
    if let Target::Serve { admitted, .. } = &mut t {
        *admitted = false;
    }
    t
}

impl Refusals {
    /// True when these refusals were for `target` (up to admission).
    fn applies_to(&self, target: &Target) -> bool {
        self.target == refusal_target(target)
    }

    /// Drops what HAProxy already refused for this target: a refused `set server addr`
    /// drops the whole sequence (every later step assumes the address), any other refused
    /// command only itself (a static algorithm refusing `set weight 5` leaves the member
    /// in at full weight).
    fn filter(&self, cmds: &mut Vec<Command>) {
        let refused = |c: &Command| self.commands.iter().any(|r| r.command == c.to_string());
        if cmds
            .iter()
            .any(|c| matches!(c, Command::SetAddr { .. }) && refused(c))
        {
            cmds.clear();
        } else {
            cmds.retain(|c| !refused(c));
        }
    }
}

/// One slot's planned commands.
struct SlotBatch {
    key: (String, String),
    member: Option<String>,
    target: Target,
    cmds: Vec<Command>,
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
    Refusals(String, HashMap<String, String>),
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

    /// The policy's refusals in `backend` (member → reason), so that a member losing its
    /// slot to one is logged as `refused: <reason>`. Send before the matching
    /// [`ReconcilerHandle::set_desired`].
    pub fn set_refusals(&self, backend: &str, refusals: HashMap<String, String>) {
        let _ = self.tx.send(Msg::Refusals(backend.to_string(), refusals));
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
    placeholders: HashMap<String, IpAddr>,
    timers: Vec<Timer>,
    converged: HashMap<(String, String), Target>,
    refused: HashMap<(String, String), Refusals>,
    gate: HashMap<(String, String), Instant>,
    waiting_since: HashMap<(String, String), Instant>,
    proc_id: Option<(u32, Option<u64>)>,
    status: ReconcilerStatus,
    backoff: Duration,
    next_pass: Instant,
    /// Rate limit of the "reconcile failed" line.
    repeats: Repeats,
    /// `--server-state-file`.
    state_file: Option<StateFile>,
    /// Per backend, the earliest membership change not yet turned into commands.
    changes: HashMap<String, SystemTime>,
    /// The agent's probes (`--admit check`), by member address.
    probes: HashMap<SocketAddr, ProbeState>,
    probe_tx: mpsc::UnboundedSender<(SocketAddr, Result<(), String>)>,
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
        state_file: cfg.server_state_file.clone().map(StateFile::new),
        cfg,
        client,
        desired: HashMap::new(),
        tports: HashMap::new(),
        placeholders: HashMap::new(),
        timers: Vec::new(),
        converged: HashMap::new(),
        refused: HashMap::new(),
        gate: HashMap::new(),
        waiting_since: HashMap::new(),
        proc_id: None,
        status: ReconcilerStatus::default(),
        next_pass: Instant::now(),
        repeats: Repeats::default(),
        changes: HashMap::new(),
        probes: HashMap::new(),
        probe_tx,
    };
    loop {
        let wake = st
            .timers
            .iter()
            .map(|t| t.at)
            .chain([st.next_pass])
            .chain(st.state_file.as_ref().and_then(StateFile::deadline))
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
                            st.book(&b);
                            if let Some(t) = changed {
                                let e = st.changes.entry(b.clone()).or_insert(t);
                                *e = (*e).min(t);
                            }
                            st.desired.insert(b, m);
                        }
                        Some(Msg::Refusals(b, r)) => {
                            st.book(&b).set_refusals(r);
                        }
                    }
                    match rx.try_recv() {
                        Ok(m) => msg = Some(m),
                        Err(_) => break,
                    }
                }
                st.pass(&|| !rx.is_empty() || !probe_rx.is_empty()).await;
                st.flush_state_file().await;
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
                st.flush_state_file().await;
                let _ = stx.send(st.status.clone());
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                st.fire_timers();
                // (before set_desired, a pass only reads HAProxy: every backend without
                // desired members is skipped in `pass`, so nothing is drained)
                st.pass(&|| !rx.is_empty() || !probe_rx.is_empty()).await;
                st.flush_state_file().await;
                let _ = stx.send(st.status.clone());
            }
        }
    }
}

impl State {
    /// The book of `backend`, created (and the backend managed) on first mention.
    fn book(&mut self, backend: &str) -> &mut Book {
        if !self.books.contains_key(backend) {
            self.cfg.backends.push(backend.to_string());
        }
        self.books.entry(backend.to_string()).or_default()
    }

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
        if let Verdict::Log { repeated } = self.repeats.fail(&what, Instant::now()) {
            tracing::warn!(error = %what, retry_ms = self.backoff.as_millis() as u64,
                repeated_since_last_line = repeated, "HAProxy reconcile failed (the same error is logged again at most once a minute)");
        }
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
        let failures = self.repeats.ok();
        if failures > 0 {
            tracing::info!(failures, "HAProxy reconcile works again");
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
                // a new process may accept what the old one refused (a changed config)
                self.refused.clear();
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
    /// costs one exchange less per batch.
    async fn pass(&mut self, more: &(dyn Fn() -> bool + Sync)) {
        self.status.passes += 1;
        let Some(obs) = self.observe().await else {
            return;
        };
        let now = Instant::now();
        let mut pending = false;
        let mut errors: Vec<String> = Vec::new();
        let mut waiting_for_desired = false;
        let mut problems = BTreeMap::new();
        let mut batches: Vec<SlotBatch> = Vec::new();
        // backends planned this pass, and those of them that got commands
        let mut planned: Vec<String> = Vec::new();
        let mut commanded: std::collections::BTreeSet<String> = Default::default();
        for b in self.cfg.backends.clone() {
            if let Some(p) = obs.backend_problem(&b) {
                if self.status.backend_errors.get(&b) != Some(&p) {
                    tracing::error!(backend = %b, error = %p, "backend cannot be managed; its servers are left alone");
                }
                errors.push(p.clone());
                problems.insert(b.clone(), p);
                continue;
            }
            let Some(slots) = obs.backends.get(&b) else {
                continue;
            };
            if !self.status.backend_errors.contains_key(&b) && !self.tports.contains_key(&b) {
                tracing::info!(
                    backend = %b,
                    slots = slots.len(),
                    templates = ?obs.templates.get(&b).map(|t| t.iter().map(|t| format!("{}{}-{}", t.prefix, t.numbers.0, t.numbers.1)).collect::<Vec<_>>()),
                    static_servers = ?obs.static_servers.get(&b).cloned().unwrap_or_default(),
                    algo = obs.algos.get(&b).map_or("-", String::as_str),
                    "backend slots discovered (static servers are left alone)"
                );
            }
            let placeholder = *self
                .placeholders
                .entry(b.clone())
                .or_insert_with(|| template_placeholder(slots, self.cfg.placeholder));
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
            for r in book.release_done(slots) {
                tracing::info!(
                    member = r.member.as_deref().unwrap_or("-"),
                    backend = %b,
                    slot = %r.slot,
                    reason = %Cause::Released,
                    after = %r.cause,
                    "slot freed"
                );
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
                let key = (b.clone(), slot.clone());
                if agent_holds(&target, o) && self.converged.get(&key) == Some(&target) {
                    // the slot's agent-check drained or disabled it after haserf had put it
                    // in rotation: the agent decides, haserf does not fight it
                    continue;
                }
                let (mut c, reason) = plan_slot(&b, &target, o, &ctx);
                if let Some(r) = self.refused.get(&key) {
                    if r.applies_to(&target) {
                        r.filter(&mut c);
                    } else {
                        self.refused.remove(&key);
                    }
                }
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
                let former = book.former(&slot);
                let member = book
                    .member_of(&slot)
                    .or(former.and_then(|(m, _)| m))
                    .unwrap_or("-");
                // the words of the log: why the member goes (or went), where it does
                let why = match (reason, book.cause(&slot), former) {
                    (Reason::Drain, Some(c), _) => c.to_string(),
                    (Reason::Release, _, _) => Cause::Released.to_string(),
                    (Reason::Clear, None, Some((_, c))) => c.to_string(),
                    (Reason::Clear, None, None) => Cause::Unowned.to_string(),
                    _ => reason.as_str().to_string(),
                };
                tracing::info!(
                    member,
                    backend = %b,
                    slot = %slot,
                    addr = %addr,
                    reason = %why,
                    commands = c.len(),
                    "slot change"
                );
                batches.push(SlotBatch {
                    key,
                    member: book.member_of(&slot).map(str::to_string),
                    target,
                    cmds: c,
                });
            }
        }
        self.status.backend_errors = problems;
        let mut final_obs = obs;
        let mut refused = false;
        if !batches.is_empty() {
            match self.apply(&batches).await {
                Ok(new) => {
                    if let Some(sf) = &mut self.state_file {
                        sf.changed(Instant::now());
                    }
                    refused = !new.is_empty();
                    errors.extend(new);
                    if let Some(answered) = self.status.last_apply {
                        self.record_change_latency(&commanded, answered);
                    }
                }
                Err(e) => {
                    self.fail(e);
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
                        placeholder: self.placeholder_of(b),
                        template_port: *tport,
                    };
                    let targets = self.admitted(b, self.books[b].targets(slots));
                    for ((slot, target), s) in targets.into_iter().zip(slots.iter()) {
                        let key = (b.clone(), slot.clone());
                        if agent_holds(&target, s) && self.converged.get(&key) == Some(&target) {
                            continue;
                        }
                        let (mut c, r) = plan_slot(b, &target, s, &ctx);
                        if let Some(rf) = self.refused.get(&key) {
                            if rf.applies_to(&target) {
                                rf.filter(&mut c);
                            }
                        }
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
        // a refusal is not retried, so it stays the error until its target changes
        // (`refused_commands` lists them all)
        if errors.is_empty() {
            let mut refused: Vec<&RefusedCommand> =
                self.refused.values().flat_map(|r| &r.commands).collect();
            refused.sort_by(|a, b| (&a.backend, &a.slot).cmp(&(&b.backend, &b.slot)));
            if let Some(first) = refused.first() {
                errors.push(format!(
                    "HAProxy refused {} command(s), not retried (see refused_commands); first: {}/{}: `{}`: {}",
                    refused.len(),
                    first.backend,
                    first.slot,
                    first.command,
                    first.reply
                ));
            }
        }
        self.status.last_error = if errors.is_empty() {
            None
        } else {
            Some(errors.join("; "))
        };
        self.status.refused_commands = self
            .refused
            .values()
            .flat_map(|r| r.commands.iter().cloned())
            .collect();
        self.status
            .refused_commands
            .sort_by(|a, b| (&a.backend, &a.slot).cmp(&(&b.backend, &b.slot)));
        // ready once every backend got its desired members and was reconciled once; a
        // backend that cannot be managed keeps the agent not ready
        if !self.status.backend_errors.is_empty() {
            self.status.ready = false;
        } else if !waiting_for_desired {
            if !self.status.ready {
                if let Some(sf) = &mut self.state_file {
                    sf.first_pass(Instant::now());
                }
            }
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

    /// Writes the server-state file when a write is due (hook of [`super::state_file`]).
    async fn flush_state_file(&mut self) {
        let Some(sf) = &mut self.state_file else {
            return;
        };
        sf.flush(&self.client, &self.cfg.backends).await;
        self.status.server_state_writes = sf.writes;
        self.status.server_state_error = sf.last_error.clone();
    }

    /// The placeholder address of `backend`'s free slots (as first seen), else the
    /// configured default.
    fn placeholder_of(&self, backend: &str) -> IpAddr {
        self.placeholders
            .get(backend)
            .copied()
            .unwrap_or(self.cfg.placeholder)
    }
}
