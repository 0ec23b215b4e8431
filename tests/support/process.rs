//! Child processes that cannot outlive the test: each runs under `timeout -k 5 N` in its own
//! process group, and the whole group gets SIGKILL when the [`Proc`] is dropped (also when the
//! test panics). Output goes to a log file the test can read.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait::try_wait_until;

/// Default upper bound on the life of every process the harness starts, in seconds.
/// Override with the environment variable `HASERF_TEST_PROC_TIMEOUT`.
pub const DEFAULT_PROC_TIMEOUT_SECS: u64 = 600;

fn proc_timeout_secs() -> u64 {
    std::env::var("HASERF_TEST_PROC_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_PROC_TIMEOUT_SECS)
}

/// The real peers whose version the test matrix swaps: program name, the environment variable
/// naming the binary to run instead, and the matrix name of one version (for messages).
const PEER_PROGRAMS: [(&str, &str, &str); 2] = [
    ("haproxy", "HASERF_HAPROXY", "haproxy-3.2"),
    ("serf", "HASERF_SERF", "serf-0.10"),
];

/// The program the harness runs for `name`. `haproxy` and `serf` are the version matrix's
/// peers: `$HASERF_HAPROXY` / `$HASERF_SERF` when set (a binary path, as printed by
/// `scripts/versions.sh`), else the name itself, found on `PATH`. Any other name is returned
/// unchanged. [`Launch`], [`short_command`] and [`require_binary`] all resolve through here,
/// so a test that starts `"haproxy"` runs the version under test.
pub fn program(name: &str) -> String {
    PEER_PROGRAMS
        .iter()
        .find(|(n, _, _)| *n == name)
        .and_then(|(_, var, _)| std::env::var(var).ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| name.to_string())
}

/// Resolves `name` as [`program`] does and panics with an install hint unless it is an
/// existing file (a path) or an executable on `PATH`; returns its path.
#[track_caller]
pub fn require_binary(name: &str) -> PathBuf {
    let resolved = program(name);
    let found = if resolved.contains('/') {
        Some(PathBuf::from(&resolved)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(&resolved))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = found {
        return p;
    }
    let from_env = PEER_PROGRAMS
        .iter()
        .find(|(n, var, _)| *n == name && std::env::var_os(var).is_some_and(|v| !v.is_empty()));
    match from_env {
        Some((_, var, example)) => panic!(
            "{var}={resolved} does not exist; the tested versions come from Debian's \
             archive: run `scripts/versions.sh` (as root) and use a path it prints, e.g. \
             {var}=$(scripts/versions.sh --path {example})"
        ),
        None if resolved.contains('/') => {
            panic!("`{resolved}` does not exist (not built yet?)")
        }
        None => panic!(
            "`{name}` not found in PATH; the integration tests need real peers: \
             run `apt-get install haproxy serf` (or scripts/install-deps.sh)"
        ),
    }
}

/// What to start: a program, its arguments, where its output goes, and optionally the
/// network namespace to run it in.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Program name or path (`haproxy` and `serf` are resolved by [`program`] at spawn).
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory, if any.
    pub cwd: Option<PathBuf>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// Run inside this network namespace (`ip netns exec NAME`).
    pub netns: Option<String>,
    /// Upper bound on the process life, seconds (default [`DEFAULT_PROC_TIMEOUT_SECS`]).
    pub timeout_secs: Option<u64>,
}

impl Launch {
    /// A launch of `program` with `args`, logging to `log`.
    pub fn new(program: &str, args: &[&str], log: impl Into<PathBuf>) -> Launch {
        Launch {
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            cwd: None,
            log: log.into(),
            netns: None,
            timeout_secs: None,
        }
    }

    /// Runs it inside network namespace `ns` (builder style).
    pub fn in_netns(mut self, ns: Option<&str>) -> Launch {
        self.netns = ns.map(str::to_string);
        self
    }

    /// Adds an environment variable (builder style).
    pub fn env(mut self, k: &str, v: &str) -> Launch {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// The full argv: `timeout -k 5 N [ip netns exec NS] program args…`.
    fn argv(&self) -> Vec<String> {
        let secs = self.timeout_secs.unwrap_or_else(proc_timeout_secs);
        let mut v = vec!["-k".to_string(), "5".to_string(), secs.to_string()];
        if let Some(ns) = &self.netns {
            v.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        v.push(program(&self.program));
        v.extend(self.args.iter().cloned());
        v
    }
}

/// Builds a one-shot command (for short CLI calls such as `serf members`), bounded by
/// `timeout -k 2 SECS` and optionally run inside network namespace `netns`; `program` is
/// resolved as [`program`] does.
pub fn short_command(netns: Option<&str>, secs: u64, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "2", &secs.to_string()]);
    if let Some(ns) = netns {
        c.args(["ip", "netns", "exec", ns]);
    }
    c.arg(self::program(program))
        .args(args)
        .stdin(Stdio::null());
    c
}

/// A running child process group; killed (SIGKILL to the group) on drop.
#[derive(Debug)]
pub struct Proc {
    launch: Launch,
    child: Child,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Starts `launch` in its own process group under `timeout`.
    #[track_caller]
    pub fn spawn(launch: Launch) -> Proc {
        use std::os::unix::process::CommandExt;
        require_binary(&launch.program);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", launch.log.display()));
        let mut cmd = Command::new("timeout");
        cmd.args(launch.argv())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log fd"))
            .stderr(log)
            .process_group(0);
        for (k, v) in &launch.env {
            cmd.env(k, v);
        }
        if let Some(d) = &launch.cwd {
            cmd.current_dir(d);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launch.program));
        Proc {
            launch,
            child,
            exited: None,
        }
    }

    /// PID of the `timeout` wrapper, which is also the process group id.
    pub fn group_pid(&self) -> u32 {
        self.child.id()
    }

    /// PID of the program itself (the child of the `timeout` wrapper), once it exists.
    pub fn main_pid(&self) -> Option<u32> {
        children_of(self.child.id()).into_iter().next()
    }

    /// Waits (bounded) until the program itself has a PID and returns it.
    #[track_caller]
    pub fn wait_main_pid(&self) -> u32 {
        try_wait_until(Duration::from_secs(5), "the program's pid", || {
            self.main_pid().ok_or("no child of timeout yet")
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends signal `sig` (e.g. `"INT"`, `"TERM"`, `"USR1"`) to the program only (not to the
    /// `timeout` wrapper, which would forward it a second time).
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.main_pid() {
            let _ = Command::new("kill")
                .args(["-s", sig, &pid.to_string()])
                .status();
        }
    }

    /// True while the process (group leader) has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.exited = Some(st);
                false
            }
            _ => true,
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let r = try_wait_until(timeout, "process exit", || {
            if self.is_running() {
                Err("running")
            } else {
                Ok(())
            }
        });
        r.ok().and(self.exited)
    }

    /// SIGKILL to the whole process group (kill -9), then reaps the wrapper.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let pgid = self.child.id();
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
            if let Ok(st) = self.child.wait() {
                self.exited = Some(st);
            }
        } else {
            // Stragglers of an exited wrapper (e.g. after `timeout`): still kill the group.
            let pgid = self.child.id();
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The path of the log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.launch.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.launch.log).unwrap_or_default()
    }

    /// What was launched.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PIDs whose parent is `ppid` (read from /proc).
pub fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let mut f = rest.split_whitespace();
            let _state = f.next();
            if f.next().and_then(|p| p.parse::<u32>().ok()) == Some(ppid) {
                out.push(pid);
            }
        }
    }
    out
}
