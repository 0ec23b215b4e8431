//! A small network-namespace lab for the bench: one "switch" namespace holding a bridge, and
//! one namespace per host, each wired to the bridge with a veth pair.
//!
//! Isolation: the bridge lives in its own namespace, not in the machine's, and nothing in the
//! lab has a route anywhere but the lab's own /16, so no packet can leave the machine. Host
//! addresses are in 198.18.0.0/16 (RFC 2544, reserved for benchmarking), private to the lab:
//! two labs may use the same addresses because each has its own switch.
//!
//! Every process started here runs as `timeout -k 5 N ip netns exec NS program …` in its own
//! process group, is recorded in a global registry, and is killed by process group id (never
//! by name) on drop, on Ctrl-C and on SIGTERM. Namespaces are deleted the same way.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Everything alive that a Ctrl-C must clean up: process groups and namespaces.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    groups: Vec::new(),
    namespaces: Vec::new(),
    dirs: Vec::new(),
});
static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

struct Registry {
    groups: Vec<u32>,
    namespaces: Vec<String>,
    dirs: Vec<PathBuf>,
}

/// Installs the Ctrl-C / SIGTERM handler that kills every registered process group and
/// deletes every registered namespace, then exits with status 130.
pub fn install_signal_cleanup() {
    std::thread::spawn(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("haserf-bench: no signal handler: {e}");
                return;
            }
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("haserf-bench: interrupted; tearing the lab down");
        cleanup_all();
        std::process::exit(130);
    });
}

/// Kills every registered process group and deletes every registered namespace.
pub fn cleanup_all() {
    let (groups, namespaces, dirs) = {
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut r.groups),
            std::mem::take(&mut r.namespaces),
            std::mem::take(&mut r.dirs),
        )
    };
    for pg in groups {
        kill_group(pg, "KILL");
    }
    for ns in namespaces.iter().rev() {
        let _ = quiet("ip", &["netns", "del", ns]);
    }
    if std::env::var_os("HASERF_BENCH_KEEP").is_none() {
        for d in dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Sends `signal` (a name such as `KILL`, `TERM`, `INT`, `USR2`) to process group `pgid`.
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn quiet(program: &str, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Runs a command to completion; an error names the command and carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The program the lab runs for `name`: `haproxy` and `serf` are `$HASERF_HAPROXY` and
/// `$HASERF_SERF` when set (a binary of another version, as printed by `scripts/versions.sh`),
/// else the name itself, found on `PATH`; any other name is returned unchanged.
pub fn program(name: &str) -> String {
    let var = match name {
        "haproxy" => "HASERF_HAPROXY",
        "serf" => "HASERF_SERF",
        _ => return name.to_string(),
    };
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| name.to_string())
}

/// Fails with an install hint when a program the lab needs ([`program`]) is missing.
pub fn require(name: &str) -> Result<(), String> {
    let program = program(name);
    let found = if program.contains('/') {
        Path::new(&program).is_file()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(&program).is_file()))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "`{program}` not found: apt-get install haproxy serf iproute2 (or run scripts/install-deps.sh; other versions: scripts/versions.sh)"
        ))
    }
}

/// The lab: a bridge in a switch namespace and hosts on it.
pub struct Lab {
    prefix: String,
    switch: String,
    dir: PathBuf,
    keep_dir: bool,
    hosts: BTreeMap<String, Host>,
    next_port: u32,
    /// Upper bound in seconds for every process started in this lab.
    pub proc_timeout: u64,
}

/// One host: a namespace with `eth0` on the lab's bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Short name inside the lab (`lb`, `web3`, …).
    pub name: String,
    /// Namespace name on the machine.
    pub ns: String,
    /// The host's address on the bridge.
    pub ip: Ipv4Addr,
}

impl Lab {
    /// Creates the switch namespace and bridge. `proc_timeout` bounds every process.
    pub fn new(proc_timeout: u64) -> Result<Lab, String> {
        if !is_root() {
            return Err("the lab needs root (network namespaces)".into());
        }
        require("ip")?;
        require("timeout")?;
        let seq = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("hsb{}-{}", std::process::id(), seq);
        let dir = std::env::temp_dir().join(format!("haserf-bench.{prefix}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let switch = format!("{prefix}-sw");
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirs
            .push(dir.clone());
        let lab = Lab {
            prefix,
            switch: switch.clone(),
            dir,
            keep_dir: std::env::var_os("HASERF_BENCH_KEEP").is_some(),
            hosts: BTreeMap::new(),
            next_port: 0,
            proc_timeout,
        };
        add_namespace(&switch)?;
        run(
            "ip",
            &["-n", &switch, "link", "add", "br0", "type", "bridge"],
        )?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// The lab's working directory (configs, logs, sockets).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a host with address `ip` (a /16 on the bridge).
    pub fn add_host(&mut self, name: &str, ip: Ipv4Addr) -> Result<Host, String> {
        if self.hosts.contains_key(name) {
            return Err(format!("host {name} exists"));
        }
        let ns = format!("{}-{name}", self.prefix);
        add_namespace(&ns)?;
        self.next_port += 1;
        let port = format!("p{}", self.next_port);
        let batch = format!(
            "link add eth0 type veth peer name {port} netns {sw}\n\
             addr add {ip}/16 dev eth0\n\
             link set lo up\n\
             link set eth0 up\n",
            sw = self.switch
        );
        ip_batch(&ns, &batch)?;
        ip_batch(
            &self.switch,
            &format!("link set {port} master br0\nlink set {port} up\n"),
        )?;
        let host = Host {
            name: name.to_string(),
            ns,
            ip,
        };
        self.hosts.insert(name.to_string(), host.clone());
        Ok(host)
    }

    /// Starts `program args` inside `host`, output to `<lab dir>/<log>.log`.
    pub fn spawn(
        &self,
        host: &Host,
        log: &str,
        program: &str,
        args: &[String],
    ) -> Result<Proc, String> {
        self.spawn_with(host, log, program, args, &[], false)
    }

    /// Starts `program args` inside `host` with extra environment; when `piped`, stdin and
    /// stdout are pipes the caller reads and writes, and stderr goes to the log.
    pub fn spawn_with(
        &self,
        host: &Host,
        log: &str,
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        piped: bool,
    ) -> Result<Proc, String> {
        let log_path = self.dir.join(format!("{log}.log"));
        let logf = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", &self.proc_timeout.to_string()])
            .args(["ip", "netns", "exec", &host.ns, &self::program(program)])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .process_group(0);
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            let out = logf
                .try_clone()
                .map_err(|e| format!("{}: {e}", log_path.display()))?;
            cmd.stdin(Stdio::null()).stdout(out);
        }
        cmd.stderr(logf);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {program} in {}: {e}", host.name))?;
        let pgid = child.id();
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .push(pgid);
        Ok(Proc {
            child,
            pgid,
            log: log_path,
            what: format!("{program} on {}", host.name),
        })
    }

    /// Runs a short command inside `host` and returns its stdout (bounded to 30 s).
    pub fn exec(&self, host: &Host, program: &str, args: &[&str]) -> Result<String, String> {
        let program = self::program(program);
        let mut full = vec!["-k", "2", "30", "ip", "netns", "exec", &host.ns, &program];
        full.extend_from_slice(args);
        run("timeout", &full)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (they may hold the namespaces), then the namespaces.
        let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<String> = r
            .namespaces
            .iter()
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .cloned()
            .collect();
        r.namespaces.retain(|n| !mine.contains(n));
        drop(r);
        for ns in mine.iter().rev() {
            // Any process still inside (started by a handler, say) goes too, by PID.
            if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    let _ = quiet("kill", &["-s", "KILL", pid]);
                }
            }
            let _ = quiet("ip", &["netns", "del", ns]);
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirs
            .retain(|d| d != &self.dir);
    }
}

fn is_root() -> bool {
    run("id", &["-u"]).map(|s| s.trim() == "0").unwrap_or(false)
}

fn add_namespace(ns: &str) -> Result<(), String> {
    run("ip", &["netns", "add", ns])?;
    REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .namespaces
        .push(ns.to_string());
    Ok(())
}

fn ip_batch(ns: &str, batch: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| format!("ip -batch: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip -batch: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip -n {ns} -batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A process started in the lab, killed (whole process group) on drop.
pub struct Proc {
    /// The `timeout` process; its pid is the process group id.
    pub child: Child,
    /// Process group id.
    pub pgid: u32,
    /// Where its output goes.
    pub log: PathBuf,
    what: String,
}

impl Proc {
    /// `kill -9` of the whole group, then reaps it.
    pub fn kill(&mut self) {
        kill_group(self.pgid, "KILL");
        let _ = self.child.wait();
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .retain(|g| *g != self.pgid);
    }

    /// Whether it has exited; the exit status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for it to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The last lines of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(15);
        format!(
            "{} ({}):\n{}",
            self.what,
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        } else {
            REGISTRY
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .groups
                .retain(|g| *g != self.pgid);
        }
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `limit` with `what`.
pub fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
