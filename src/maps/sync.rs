//! The driver: one tokio task keeps every configured map equal to the cluster, in HAProxy
//! (runtime API) and in its file. It follows the slot reconciler's published status (the
//! slot table, HAProxy's pid) and the membership (woken by [`MapSyncHandle::changed`]);
//! protocol-free decisions live in [`super::content`] and [`super::planner`].
//!
//! Nothing is touched before the reconciler is ready (membership known, HAProxy read,
//! first plan applied): a restarted agent that does not know the cluster yet must not
//! empty the maps HAProxy keeps serving from. After that, on every change:
//! 1. the desired entries are computed; when they differ from the file, the file is
//!    rewritten atomically (what a reloaded HAProxy will read);
//! 2. when they differ from what HAProxy was last seen to hold, or HAProxy is a new
//!    process, or [`MapSyncConfig::verify_interval`] passed, HAProxy's copy is read
//!    (`show map`), the difference applied in one batch and read back.
//!
//! When the slot table changes, this task runs right after the reconciler's pass that
//! changed it, and the reconciler fills a slot in `drain` and only sets it `ready` in a
//! later pass (after its first health check): the `served-by` entry names a new member
//! before load-balanced traffic reaches it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::content::{desired_entries, Entries};
use super::file::{render, write_atomic};
use super::planner::{plan_map, MapCommand};
use super::show::parse_show_map;
use super::MapSpec;
use crate::control::model::MemberView;
use crate::haproxy::Client;
use crate::slots::ReconcilerStatus;

/// Settings of the map task.
#[derive(Debug, Clone)]
pub struct MapSyncConfig {
    /// HAProxy runtime API (admin level; `add map`/`set map`/`del map` need it).
    pub socket: String,
    /// The maps to keep.
    pub maps: Vec<MapSpec>,
    /// Timeout of one socket exchange.
    pub timeout: Duration,
    /// HAProxy's copy is read back at least this often even when nothing changed, so a
    /// map cleared by hand is repaired (default 10 s).
    pub verify_interval: Duration,
    /// Largest retry delay after a failed exchange (default 1 s).
    pub max_backoff: Duration,
}

impl MapSyncConfig {
    /// Defaults: timeout 3 s, verify every 10 s, backoff up to 1 s.
    pub fn new(socket: impl Into<String>, maps: Vec<MapSpec>) -> MapSyncConfig {
        MapSyncConfig {
            socket: socket.into(),
            maps,
            timeout: Duration::from_secs(3),
            verify_interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// The state of one map, for `haserf status` and the metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MapStatus {
    /// Kind (`served-by`, `member-status`, `member-tags`, `tag:NAME`).
    pub kind: String,
    /// The map file.
    pub file: String,
    /// Entries desired now.
    pub entries: usize,
    /// HAProxy's copy was read back equal to the desired entries.
    pub in_sync: bool,
    /// Runtime commands sent (total).
    pub commands: u64,
    /// Batches applied (total).
    pub applies: u64,
    /// Times the file was rewritten (total).
    pub file_writes: u64,
    /// Failed exchanges, refused commands and failed file writes (total).
    pub errors: u64,
    /// Entries left out because their key or value cannot be stored (now).
    pub refused_entries: usize,
    /// Why the last attempt to update HAProxy's copy failed, if it did.
    pub last_error: Option<String>,
    /// Why the last write of the file failed, if it did.
    pub file_error: Option<String>,
}

/// Handle to the map task.
#[derive(Debug)]
pub struct MapSyncHandle {
    wake: Arc<Notify>,
    status: watch::Receiver<Vec<MapStatus>>,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Where the members come from (the agent passes its gossip view).
pub type MembersFn = Arc<dyn Fn() -> Vec<MemberView> + Send + Sync>;

/// Starts the map task (needs a tokio runtime). `slots` is the reconciler's status
/// channel; `members` is called on every wake.
pub fn spawn_map_sync(
    cfg: MapSyncConfig,
    slots: watch::Receiver<ReconcilerStatus>,
    members: MembersFn,
) -> MapSyncHandle {
    let wake = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let initial = cfg
        .maps
        .iter()
        .map(|m| MapStatus {
            kind: m.kind.to_string(),
            file: m.path.display().to_string(),
            ..MapStatus::default()
        })
        .collect();
    let (stx, srx) = watch::channel(initial);
    let task = tokio::spawn(run(cfg, slots, members, wake.clone(), stop.clone(), stx));
    MapSyncHandle {
        wake,
        status: srx,
        stop,
        task: Mutex::new(Some(task)),
    }
}

impl MapSyncHandle {
    /// The membership changed: recompute soon.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// The latest status of every map.
    pub fn status(&self) -> Vec<MapStatus> {
        self.status.borrow().clone()
    }

    /// Stops the task. HAProxy and the files keep the entries they have.
    pub async fn shutdown(&self) {
        self.stop.notify_one();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

struct MapState {
    spec: MapSpec,
    /// The file text last written (or found at start).
    written: Option<String>,
    /// The desired entries last computed.
    desired: Entries,
    /// What HAProxy was last read back to hold, when it equalled `desired` then.
    applied: Option<Entries>,
    status: MapStatus,
}

async fn run(
    cfg: MapSyncConfig,
    mut slots: watch::Receiver<ReconcilerStatus>,
    members: MembersFn,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
    stx: watch::Sender<Vec<MapStatus>>,
) {
    let client = Client::new(&cfg.socket).with_timeout(cfg.timeout);
    let mut maps: Vec<MapState> = cfg
        .maps
        .iter()
        .zip(stx.borrow().iter())
        .map(|(spec, status)| MapState {
            written: std::fs::read_to_string(&spec.path).ok(),
            spec: spec.clone(),
            desired: Entries::new(),
            applied: None,
            status: status.clone(),
        })
        .collect();
    let mut process: Option<(Option<u32>, u64)> = None;
    let mut next_verify = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut retry_at: Option<Instant> = None;
    loop {
        let wake_at = retry_at.unwrap_or(next_verify).min(next_verify);
        tokio::select! {
            _ = stop.notified() => return,
            r = slots.changed() => if r.is_err() { return },
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
        let (proc_id, changed) = {
            let st = slots.borrow_and_update();
            if !st.ready {
                // woken again when the reconciler publishes its next status
                next_verify = Instant::now() + cfg.verify_interval;
                continue;
            }
            let members = members();
            let mut changed = false;
            for m in &mut maps {
                let (desired, refused) = desired_entries(&m.spec.kind, &st.slots, &members);
                m.status.refused_entries = refused.len();
                if !refused.is_empty() && m.desired != desired {
                    tracing::warn!(map = %m.spec.path.display(), left_out = ?refused, "map entries that cannot be stored were left out");
                }
                if m.desired != desired || m.written.is_none() {
                    m.desired = desired;
                    changed = true;
                }
            }
            ((st.haproxy_pid, st.haproxy_restarts), changed)
        };
        if changed || maps.iter().any(|m| m.status.file_error.is_some()) {
            for m in &mut maps {
                write_file(m);
            }
        }
        if process != Some(proc_id) {
            // a new HAProxy process loaded the maps from the files: read them again
            process = Some(proc_id);
            for m in &mut maps {
                m.applied = None;
            }
        }
        let now = Instant::now();
        let verify = now >= next_verify;
        let due = verify || retry_at.is_some_and(|t| now >= t);
        let stale = maps.iter().any(|m| m.applied.as_ref() != Some(&m.desired));
        if !(stale || due) {
            continue;
        }
        match apply(&client, &mut maps).await {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                retry_at = None;
            }
            Err(()) => {
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
        }
        if verify {
            next_verify = Instant::now() + cfg.verify_interval;
        }
        let _ = stx.send(maps.iter().map(|m| m.status.clone()).collect());
    }
}

fn write_file(m: &mut MapState) {
    let text = render(&m.spec.kind, &m.desired);
    if m.written.as_deref() == Some(text.as_str()) {
        m.status.entries = m.desired.len();
        return;
    }
    match write_atomic(&m.spec.path, &text) {
        Ok(()) => {
            m.status.file_writes += 1;
            m.written = Some(text);
            if m.status.file_error.take().is_some() {
                tracing::info!(map = %m.spec.path.display(), "map file written again");
            }
        }
        Err(e) => {
            m.status.errors += 1;
            let e = format!("cannot write {}: {e}", m.spec.path.display());
            if m.status.file_error.as_ref() != Some(&e) {
                tracing::warn!(map = %m.spec.path.display(), error = %e, "map file not written; a reloaded HAProxy would read old entries");
            }
            m.status.file_error = Some(e);
        }
    }
    m.status.entries = m.desired.len();
}

/// Logs an error only when it differs from the previous one (and the recovery once).
fn set_error(m: &mut MapState, error: Option<String>) {
    if m.status.last_error != error {
        match &error {
            Some(e) => tracing::warn!(map = %m.spec.path.display(), error = %e, "map not in sync"),
            None => tracing::info!(map = %m.spec.path.display(), "map in sync again"),
        }
    }
    m.status.last_error = error;
}

/// Reads every map from HAProxy, applies the differences in one batch, reads back.
async fn apply(client: &Client, maps: &mut [MapState]) -> Result<(), ()> {
    let observed = match observe(client, maps).await {
        Ok(o) => o,
        Err(e) => {
            for m in maps.iter_mut() {
                m.status.errors += 1;
                m.status.in_sync = false;
                m.applied = None;
                set_error(m, Some(e.clone()));
            }
            return Err(());
        }
    };
    let mut lines = Vec::new();
    let mut owners: Vec<(usize, MapCommand)> = Vec::new();
    let mut failed = false;
    for (i, (m, obs)) in maps.iter_mut().zip(observed).enumerate() {
        let obs = match obs {
            Ok(o) => o,
            Err(e) => {
                m.status.errors += 1;
                m.status.in_sync = false;
                m.applied = None;
                set_error(m, Some(e));
                failed = true;
                continue;
            }
        };
        let cmds = plan_map(&m.desired, &obs);
        if cmds.is_empty() {
            m.applied = Some(m.desired.clone());
            m.status.in_sync = true;
            set_error(m, None);
            continue;
        }
        tracing::debug!(map = %m.spec.path.display(), commands = cmds.len(), "updating map");
        let file = m.spec.path.display().to_string();
        for c in cmds {
            lines.push(c.line(&file));
            owners.push((i, c));
        }
    }
    if lines.is_empty() {
        return if failed { Err(()) } else { Ok(()) };
    }
    let replies = match client.exchange(&lines).await {
        Ok(r) => r,
        Err(e) => {
            for &(i, _) in &owners {
                let m = &mut maps[i];
                m.applied = None;
                m.status.in_sync = false;
            }
            for m in maps.iter_mut() {
                if m.applied.is_none() {
                    m.status.errors += 1;
                    set_error(m, Some(e.to_string()));
                }
            }
            return Err(());
        }
    };
    let mut touched = vec![false; maps.len()];
    let mut refused: Vec<Option<String>> = vec![None; maps.len()];
    for ((i, c), r) in owners.iter().zip(replies) {
        touched[*i] = true;
        maps[*i].status.commands += 1;
        if let Err(e) = c.classify(&r) {
            maps[*i].status.errors += 1;
            refused[*i].get_or_insert_with(|| format!("HAProxy refused `{}`: {e}", c));
        }
    }
    // read back what was changed
    let back = observe(client, maps).await;
    for (i, m) in maps.iter_mut().enumerate() {
        if !touched[i] {
            continue;
        }
        m.status.applies += 1;
        let verified = match &back {
            Ok(all) => match &all[i] {
                Ok(obs) => plan_map(&m.desired, obs).is_empty(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        m.status.in_sync = verified;
        if verified {
            m.applied = Some(m.desired.clone());
            set_error(m, None);
        } else {
            m.applied = None;
            failed = true;
            let e = refused[i]
                .take()
                .unwrap_or_else(|| "read-back differs from the desired entries".into());
            set_error(m, Some(e));
        }
    }
    if failed {
        Err(())
    } else {
        Ok(())
    }
}

/// `show map <file>` for every map in one round trip.
async fn observe(
    client: &Client,
    maps: &[MapState],
) -> Result<Vec<Result<Vec<(String, String)>, String>>, String> {
    let lines: Vec<String> = maps
        .iter()
        .map(|m| format!("show map {}", m.spec.path.display()))
        .collect();
    let replies = client.exchange(&lines).await.map_err(|e| e.to_string())?;
    Ok(maps
        .iter()
        .zip(replies)
        .map(|(m, r)| {
            parse_show_map(&m.spec.path.display().to_string(), &r).map_err(|e| e.to_string())
        })
        .collect())
}
