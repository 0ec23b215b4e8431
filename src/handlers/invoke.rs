//! Runs one handler script for one event, as serf's `invokeEventScript` does
//! (`/bin/sh -c SCRIPT`, the agent's environment plus the `SERF_*` variables, the event on
//! stdin), but bounded: the script runs in its own process group, which is killed at the
//! timeout, and at most [`OUTPUT_LIMIT`] bytes of each of stdout and stderr are kept.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use super::event::{environment, stdin, HandlerEvent, SelfMember};

/// Bytes of stdout and of stderr kept per run (serf keeps 8 KiB of output too).
pub const OUTPUT_LIMIT: usize = 8 * 1024;

/// How one run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// Exit status (`None`: killed at the timeout, or it could not start).
    pub status: Option<ExitStatus>,
    /// The script exceeded its timeout and was killed.
    pub timed_out: bool,
    /// It could not be started.
    pub spawn_error: Option<String>,
    /// First [`OUTPUT_LIMIT`] bytes of stdout.
    pub stdout: Vec<u8>,
    /// Bytes written to stdout in all.
    pub stdout_total: usize,
    /// First [`OUTPUT_LIMIT`] bytes of stderr.
    pub stderr: Vec<u8>,
}

impl RunOutcome {
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Reads all of `r`, keeping the first `limit` bytes; returns them and the total.
async fn read_capped(mut r: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

/// Kills the script's whole process group (the shell and whatever it started).
fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `script` for `event` and waits for it, at most `timeout`.
pub async fn run_script(
    script: &str,
    me: &SelfMember,
    event: &HandlerEvent,
    timeout: Duration,
) -> RunOutcome {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(script)
        .envs(environment(me, event))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return RunOutcome {
                status: None,
                timed_out: false,
                spawn_error: Some(e.to_string()),
                stdout: Vec::new(),
                stdout_total: 0,
                stderr: Vec::new(),
            }
        }
    };
    let pid = child.id();
    let input = stdin(event);
    let mut pipe = child.stdin.take();
    // A script that does not read its stdin must not block the run: write on the side and
    // ignore a closed pipe (serf does the same in a goroutine).
    let writer = tokio::spawn(async move {
        if let Some(p) = pipe.as_mut() {
            let _ = p.write_all(&input).await;
            let _ = p.shutdown().await;
        }
        drop(pipe);
    });
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let run = async {
        let ((stdout, stdout_total), (stderr, _), status) = tokio::join!(
            read_capped(out, OUTPUT_LIMIT),
            read_capped(err, OUTPUT_LIMIT),
            child.wait()
        );
        (stdout, stdout_total, stderr, status.ok())
    };
    let result = tokio::time::timeout(timeout, run).await;
    writer.abort();
    match result {
        Ok((stdout, stdout_total, stderr, status)) => RunOutcome {
            status,
            timed_out: false,
            spawn_error: None,
            stdout,
            stdout_total,
            stderr,
        },
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.start_kill();
            let _ = child.wait().await;
            RunOutcome {
                status: None,
                timed_out: true,
                spawn_error: None,
                stdout: Vec::new(),
                stdout_total: 0,
                stderr: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::event::UserEvent;

    fn user(payload: &str) -> HandlerEvent {
        HandlerEvent::User(UserEvent {
            name: "deploy".into(),
            payload: payload.as_bytes().to_vec(),
            ltime: 4,
            coalesce: false,
        })
    }

    fn me() -> SelfMember {
        SelfMember {
            name: "n1".into(),
            tags: [("role".to_string(), "web".to_string())].into(),
        }
    }

    #[tokio::test]
    async fn a_script_reads_the_payload_and_its_environment() {
        let o = run_script(
            "printf '%s %s %s ' \"$SERF_EVENT\" \"$SERF_USER_LTIME\" \"$SERF_TAG_ROLE\"; cat; echo oops >&2",
            &me(),
            &user("v2"),
            Duration::from_secs(5),
        )
        .await;
        assert!(o.success(), "{o:?}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), "user 4 web v2\n");
        assert_eq!(String::from_utf8_lossy(&o.stderr), "oops\n");
    }

    #[tokio::test]
    async fn a_script_past_its_timeout_is_killed_with_its_children() {
        let t = std::time::Instant::now();
        let o = run_script(
            "sleep 30 & sleep 30",
            &me(),
            &user(""),
            Duration::from_millis(300),
        )
        .await;
        assert!(o.timed_out && !o.success(), "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn output_is_capped_and_a_script_ignoring_stdin_does_not_block() {
        let big = "x".repeat(1 << 20);
        let o = run_script(
            "head -c 20000 /dev/zero",
            &me(),
            &user(&big),
            Duration::from_secs(5),
        )
        .await;
        assert!(o.success(), "{o:?}");
        assert_eq!((o.stdout.len(), o.stdout_total), (OUTPUT_LIMIT, 20000));
    }
}
