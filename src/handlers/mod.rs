//! Event handler scripts with serf's contract (`serf agent -event-handler [filter=]script`,
//! config `event_handlers`): the same filters ([`filter`]), environment and stdin
//! ([`event`]), coalescing ([`coalesce`]), and a query handler's stdout as the query's
//! response. Where serf is weak this is stricter: serf runs every script of every event in
//! turn on its event loop, so one slow script holds up all others; here each script has its
//! own bounded queue and worker (events reach a script in order; a full queue drops the
//! event and counts it), each run has a timeout that kills the script's process group, and
//! failures are counted ([`HandlerCounters`]) and logged with the script's stderr. The
//! gossip side only ever does a non-blocking send ([`EventHandlers::dispatch`]).

pub mod coalesce;
pub mod event;
pub mod filter;
pub mod invoke;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

pub use coalesce::{CoalescePeriods, Coalescer};
pub use event::{EventKind, HandlerEvent, MemberLine, QueryEvent, SelfMember, UserEvent};
pub use filter::{parse_event_script, EventFilter, EventScript};

/// Limits of the handler machinery.
#[derive(Debug, Clone, Copy)]
pub struct HandlerOptions {
    /// Longest one script run may take before its process group is killed.
    pub timeout: Duration,
    /// Events waiting per script (and before coalescing) before new ones are dropped.
    pub queue: usize,
    /// Coalescing of member and user events (serf agent: 3 s / 1 s).
    pub coalesce: CoalescePeriods,
}

impl Default for HandlerOptions {
    fn default() -> Self {
        HandlerOptions {
            timeout: Duration::from_secs(60),
            queue: 256,
            coalesce: CoalescePeriods::default(),
        }
    }
}

/// What happened to handler runs since the start (the `haserf_event_handler_*` metrics).
#[derive(Debug, Default)]
pub struct HandlerCounters {
    /// Runs that exited 0.
    pub ok: AtomicU64,
    /// Runs that exited non-zero, were killed by a signal, or could not start.
    pub failed: AtomicU64,
    /// Runs killed at the timeout.
    pub timed_out: AtomicU64,
    /// Events dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Query responses refused (too large for `query_response_size_limit`, or too late).
    pub responses_refused: AtomicU64,
}

/// Where the agent hands events to the scripts. Cheap to clone.
#[derive(Clone)]
pub struct EventHandlers {
    tx: mpsc::Sender<HandlerEvent>,
    scripts: Arc<Vec<EventScript>>,
    counters: Arc<HandlerCounters>,
}

impl std::fmt::Debug for EventHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHandlers")
            .field("scripts", &self.scripts)
            .finish()
    }
}

/// Tells the workers who "self" is when an event is handled (serf: `LocalMember()`).
pub type SelfFn = Arc<dyn Fn() -> SelfMember + Send + Sync>;

impl EventHandlers {
    /// Starts the coalescer and one worker per script (on the current tokio runtime).
    pub fn start(scripts: Vec<EventScript>, opts: HandlerOptions, me: SelfFn) -> EventHandlers {
        let counters = Arc::new(HandlerCounters::default());
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let mut workers = Vec::new();
        for s in &scripts {
            let (wtx, wrx) = mpsc::channel::<(SelfMember, HandlerEvent)>(opts.queue.max(1));
            tokio::spawn(worker(
                s.script.clone(),
                wrx,
                opts.timeout,
                counters.clone(),
            ));
            workers.push((s.filter.clone(), s.script.clone(), wtx));
        }
        tokio::spawn(dispatcher(rx, workers, opts.coalesce, me, counters.clone()));
        EventHandlers {
            tx,
            scripts: Arc::new(scripts),
            counters,
        }
    }

    /// Hands one event over without waiting; a full queue drops it (counted, logged).
    pub fn dispatch(&self, ev: HandlerEvent) {
        if self.tx.try_send(ev).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("event handler queue full: event dropped");
        }
    }

    /// Some script takes queries called `name`.
    pub fn takes_query(&self, name: &str) -> bool {
        self.scripts.iter().any(|s| {
            s.filter.event == "*"
                || (s.filter.event == "query"
                    && (s.filter.name.is_empty() || s.filter.name == name))
        })
    }

    /// The counters.
    pub fn counters(&self) -> Arc<HandlerCounters> {
        self.counters.clone()
    }
}

type WorkerLink = (
    EventFilter,
    String,
    mpsc::Sender<(SelfMember, HandlerEvent)>,
);

async fn dispatcher(
    mut rx: mpsc::Receiver<HandlerEvent>,
    workers: Vec<WorkerLink>,
    periods: CoalescePeriods,
    me: SelfFn,
    counters: Arc<HandlerCounters>,
) {
    let mut coalescer = Coalescer::new(periods);
    let fan_out = |ev: HandlerEvent| {
        let who = me();
        for (filter, script, tx) in &workers {
            if filter.matches(&ev) && tx.try_send((who.clone(), ev.clone())).is_err() {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(script = %script, event = ev.kind().as_str(), "handler queue full: event dropped for this script");
            }
        }
    };
    loop {
        let deadline = coalescer.next_deadline();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    for e in coalescer.push(ev, std::time::Instant::now()) {
                        fan_out(e);
                    }
                }
                None => break,
            },
            _ = sleep => {
                for e in coalescer.poll(std::time::Instant::now()) {
                    fan_out(e);
                }
            }
        }
    }
}

async fn worker(
    script: String,
    mut rx: mpsc::Receiver<(SelfMember, HandlerEvent)>,
    timeout: Duration,
    counters: Arc<HandlerCounters>,
) {
    while let Some((me, ev)) = rx.recv().await {
        let kind = ev.kind().as_str();
        let started = std::time::Instant::now();
        let o = invoke::run_script(&script, &me, &ev, timeout).await;
        let stderr = String::from_utf8_lossy(&o.stderr);
        let stderr = stderr.trim_end();
        if o.timed_out {
            counters.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%script, event = kind, timeout = ?timeout, "event handler killed at its timeout");
            continue;
        }
        if !o.success() {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            let status = o
                .spawn_error
                .clone()
                .unwrap_or_else(|| o.status.map(|s| s.to_string()).unwrap_or_default());
            tracing::warn!(%script, event = kind, %status, %stderr, "event handler failed");
            continue;
        }
        counters.ok.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%script, event = kind, elapsed = ?started.elapsed(), %stderr, "event handler done");
        if let HandlerEvent::Query(q) = &ev {
            if o.stdout.is_empty() {
                continue;
            }
            let taken = q.responder.lock().ok().and_then(|mut r| r.take());
            let Some(mut incoming) = taken else {
                tracing::debug!(%script, query = %q.name, "query already answered by another handler");
                continue;
            };
            if o.stdout_total > o.stdout.len() {
                tracing::warn!(%script, bytes = o.stdout_total, kept = o.stdout.len(), "query handler output truncated");
            }
            if let Err(e) = incoming.respond_checked(&o.stdout).await {
                counters.responses_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%script, query = %q.name, error = %e, "cannot send the handler's output as the query response");
            }
        }
    }
}
