//! HAProxy's server-state file, kept by the agent (`--server-state-file`).
//!
//! HAProxy reads this file at start-up when haproxy.cfg has `server-state-file PATH` (global)
//! and `load-server-state-from-file global` (defaults or backend): a reloaded or restarted
//! HAProxy then starts with every slot filled, before the agent sends anything. The file is
//! the managed backends' part of HAProxy's own `show servers state` reply (format version
//! line, `# ` header, one line per server), fetched after every applied change, debounced,
//! and written atomically (temp file in the same directory, fsync, rename, fsync of the
//! directory), so HAProxy never reads half a file.
//!
//! HAProxy restores a server's *address* from the file only through `init-addr last`, which
//! it applies to servers declared with a hostname (HAProxy's `server_state.c` keeps
//! `srv_addr` as `lastaddr`): the slots are declared `server-template web 1-N
//! slot.invalid:PORT … init-addr last,127.0.0.1` (a name that never resolves; a free slot
//! falls back to the placeholder 127.0.0.1), see docs/haproxy.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::haproxy::{Client, ParseError, ServersState};

/// Quiet time after an applied change before the file is written (a burst of changes gives
/// one write).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Longest a pending write waits while changes keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// After a failed write (directory missing, disk full, HAProxy unreachable), the next try.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The managed backends' lines of a `show servers state` reply, as HAProxy prints them:
/// the version line, the header, then the servers of `backends` (in HAProxy's order).
/// Errors when the reply does not parse (nothing is written then).
pub fn render(servers_state: &str, backends: &[String]) -> Result<String, ParseError> {
    // validate the whole reply first; the lines are then copied verbatim
    ServersState::parse(servers_state)?;
    let mut out = String::with_capacity(servers_state.len());
    for (i, line) in servers_state.lines().enumerate() {
        let keep = i < 2
            || line
                .split(' ')
                .nth(1)
                .is_some_and(|be| backends.iter().any(|b| b == be));
        if keep && !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename
/// over `path`, fsync of the directory. A reader sees the old file or the new one, whole.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Trailing-edge debounce with a ceiling: a change schedules a write [`DEBOUNCE`] later; more
/// changes push it out, but never past [`MAX_DELAY`] after the first unwritten change.
#[derive(Debug, Clone, Default)]
pub struct Debounce {
    first: Option<Instant>,
    due: Option<Instant>,
}

impl Debounce {
    /// A change was applied at `now`.
    pub fn changed(&mut self, now: Instant) {
        let first = *self.first.get_or_insert(now);
        self.due = Some((now + DEBOUNCE).min(first + MAX_DELAY));
    }

    /// Asks for a write at once (the first pass).
    pub fn now(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.due = Some(now);
    }

    /// Schedules a write at `at` unless one is due sooner (a retry).
    pub fn retry_at(&mut self, at: Instant) {
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// When the pending write is due, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        self.due
    }

    /// True (and the write considered taken) when a write is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> bool {
        match self.due {
            Some(d) if d <= now => {
                self.due = None;
                self.first = None;
                true
            }
            _ => false,
        }
    }
}

/// The agent's server-state file: where, what is pending, how writes went.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    debounce: Debounce,
    /// Files written.
    pub writes: u64,
    /// Last failed write (cleared by a good one).
    pub last_error: Option<String>,
}

impl StateFile {
    /// A state file at `path`; nothing is written before [`StateFile::changed`] or
    /// [`StateFile::first_pass`].
    pub fn new(path: PathBuf) -> StateFile {
        StateFile {
            path,
            debounce: Debounce::default(),
            writes: 0,
            last_error: None,
        }
    }

    /// Where the file is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commands were applied at `now`: write after the debounce.
    pub fn changed(&mut self, now: Instant) {
        self.debounce.changed(now);
    }

    /// The first full pass is done: write at once.
    pub fn first_pass(&mut self, now: Instant) {
        self.debounce.now(now);
    }

    /// When the next write is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.debounce.deadline()
    }

    /// Writes the file if a write is due: fetches `show servers state` from `client`, keeps
    /// `backends`, writes atomically. A failure is logged (once per distinct error), kept
    /// in `last_error` and retried after [`RETRY_AFTER`] (sooner if a change comes).
    pub async fn flush(&mut self, client: &Client, backends: &[String]) {
        let now = Instant::now();
        if !self.debounce.take_due(now) {
            return;
        }
        match self.write(client, backends).await {
            Ok(()) => {
                self.writes += 1;
                if self.last_error.take().is_some() {
                    tracing::info!(path = %self.path.display(), "server-state file written again");
                }
            }
            Err(e) => {
                if self.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(path = %self.path.display(), error = %e, "server-state file not written; retrying");
                }
                self.last_error = Some(e);
                self.debounce.retry_at(now + RETRY_AFTER);
            }
        }
    }

    async fn write(&self, client: &Client, backends: &[String]) -> Result<(), String> {
        let reply = client
            .show("show servers state")
            .await
            .map_err(|e| e.to_string())?;
        let text = render(&reply, backends).map_err(|e| e.to_string())?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, text.as_bytes()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 web1 127.0.0.2 2 4 1 1 0 15 3 2 6 0 0 0 localhost 18998 - 0 0 - - 0
3 web 2 web2 127.0.0.1 0 5 1 1 2 1 0 0 14 0 0 0 localhost 3000 - 0 0 - - 0
4 api 1 api1 10.0.0.9 2 4 1 1 0 15 3 2 6 0 0 0 - 8080 - 0 0 - - 0
5 stats 1 s1 127.0.0.1 2 0 1 1 0 1 0 0 0 0 0 0 - 80 - 0 0 - - 0
";

    #[test]
    fn the_file_is_the_version_header_and_the_managed_backends_lines_verbatim() {
        let out = render(REPLY, &["web".into(), "api".into()]).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "1");
        assert!(lines[1].starts_with("# be_id be_name srv_id"));
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[2], REPLY.lines().nth(2).unwrap());
        assert!(lines[4].starts_with("4 api 1 api1 10.0.0.9 "));
        assert!(!out.contains(" stats "));
        // what HAProxy reads back: our own parser agrees on every field
        let parsed = ServersState::parse(&out).unwrap();
        assert_eq!(parsed.servers.len(), 3);
        assert_eq!(parsed.servers[0].port, Some(18998));
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn a_reply_that_does_not_parse_writes_nothing() {
        assert!(render("Unknown command\n", &["web".into()]).is_err());
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"1\n# be_id\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "1\n# be_id\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state")]);
    }

    #[test]
    fn an_atomic_write_into_a_missing_directory_fails_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope").join("state");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!p.exists());
    }

    #[test]
    fn a_burst_of_changes_gives_one_write_after_the_quiet_time() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        assert_eq!(d.deadline(), None);
        d.changed(t0);
        d.changed(t0 + Duration::from_millis(100));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(300)));
        assert!(!d.take_due(t0 + Duration::from_millis(299)));
        assert!(d.take_due(t0 + Duration::from_millis(300)));
        assert_eq!(d.deadline(), None);
        assert!(!d.take_due(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn changes_that_never_stop_still_write_within_the_ceiling() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        for i in 0..50 {
            d.changed(t0 + Duration::from_millis(i * 100));
        }
        assert_eq!(d.deadline(), Some(t0 + MAX_DELAY));
    }

    #[test]
    fn a_failed_write_is_retried_later_or_with_the_next_change() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        d.retry_at(t0 + RETRY_AFTER);
        assert!(!d.take_due(t0 + Duration::from_secs(1)));
        d.changed(t0 + Duration::from_secs(1));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(1) + DEBOUNCE));
        let mut d = Debounce::default();
        d.retry_at(t0 + RETRY_AFTER);
        assert!(d.take_due(t0 + RETRY_AFTER));
    }

    #[test]
    fn the_first_pass_writes_at_once() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        d.now(t0);
        assert!(d.take_due(t0));
    }
}
