//! The task that owns the snapshot file: appends what [`super::Snapshot`] says, writes the
//! member clock every 500 ms when it moved (serf's `clockUpdateInterval`), compacts into
//! `PATH.compact` and renames it over the log, and writes `leave` (synced) on a graceful
//! leave. Callers never wait on the disk: [`SnapshotWriter::record`] is a non-blocking send.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{replay, Previous, Snapshot};

/// Events waiting for the writer (serf: `eventChSize`).
const QUEUE: usize = 2048;
/// How often the member clock is recorded.
pub const CLOCK_INTERVAL: Duration = Duration::from_millis(500);

/// Something to record.
#[derive(Debug)]
pub enum Record {
    /// A member joined.
    Alive {
        /// Node name.
        name: String,
        /// Gossip address.
        addr: SocketAddr,
    },
    /// A member left or failed.
    NotAlive(String),
    /// A user event's Lamport time.
    UserEvent(u64),
    /// A query's Lamport time.
    Query(u64),
}

/// The open snapshot: what it said, and the file to go on appending to.
#[derive(Debug)]
pub struct Opened {
    /// The replayed past.
    pub previous: Previous,
    path: PathBuf,
    file: File,
    state: Snapshot,
}

/// Opens (creating) and replays the snapshot at `path`.
pub fn open(path: &Path, rejoin_after_leave: bool) -> std::io::Result<Opened> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let previous = replay(&String::from_utf8_lossy(&bytes), rejoin_after_leave);
    let state = Snapshot::new(&previous, bytes.len() as u64, rejoin_after_leave);
    Ok(Opened {
        previous,
        path: path.to_path_buf(),
        file,
        state,
    })
}

/// Handle to the writer task.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    tx: mpsc::Sender<Record>,
    leave: mpsc::Sender<oneshot::Sender<()>>,
}

impl SnapshotWriter {
    /// Starts the writer; `clock` reads the member clock.
    pub fn start(opened: Opened, clock: impl Fn() -> u64 + Send + 'static) -> SnapshotWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (leave, leave_rx) = mpsc::channel(1);
        tokio::spawn(run(opened, rx, leave_rx, clock));
        SnapshotWriter { tx, leave }
    }

    /// Records without waiting (a full queue drops the record, as serf's snapshotter does
    /// when it falls behind).
    pub fn record(&self, r: Record) {
        if self.tx.try_send(r).is_err() {
            tracing::warn!("snapshot writer behind: record dropped");
        }
    }

    /// Records a graceful leave and waits (at most 1 s) until it is on disk.
    pub async fn leave(&self) {
        let (done, rx) = oneshot::channel();
        if self.leave.send(done).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    fn append(&mut self, state: &mut Snapshot, line: Option<String>) {
        let Some(line) = line else { return };
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot append to the snapshot");
            return;
        }
        state.offset += line.len() as u64;
        if state.needs_compaction() {
            if let Err(e) = self.compact(state) {
                tracing::error!(path = %self.path.display(), error = %e, "snapshot compaction failed");
            }
        }
    }

    fn compact(&mut self, state: &mut Snapshot) -> std::io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".compact");
        let tmp = PathBuf::from(tmp);
        let text = state.compacted();
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        state.offset = text.len() as u64;
        tracing::debug!(path = %self.path.display(), bytes = state.offset, "snapshot compacted");
        Ok(())
    }
}

async fn run(
    opened: Opened,
    mut rx: mpsc::Receiver<Record>,
    mut leave_rx: mpsc::Receiver<oneshot::Sender<()>>,
    clock: impl Fn() -> u64,
) {
    let Opened {
        path,
        file,
        mut state,
        ..
    } = opened;
    let mut f = LogFile { path, file };
    let mut tick = tokio::time::interval(CLOCK_INTERVAL);
    loop {
        tokio::select! {
            r = rx.recv() => {
                let line = match r {
                    Some(Record::Alive { name, addr }) => state.alive(&name, &addr.to_string()),
                    Some(Record::NotAlive(name)) => state.not_alive(&name),
                    Some(Record::UserEvent(t)) => state.user_event(t),
                    Some(Record::Query(t)) => state.query(t),
                    None => break,
                };
                f.append(&mut state, line);
            }
            _ = tick.tick() => {
                let line = state.clock(clock());
                f.append(&mut state, line);
            }
            done = leave_rx.recv() => {
                let line = Some(state.leave());
                f.append(&mut state, line);
                let _ = f.file.sync_all();
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        }
    }
}
