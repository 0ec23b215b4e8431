//! The `haserf agent` binary under test (built by cargo for this test crate), started like the
//! serf peers: own address (gossip on 7946), own temp dir with its status socket, bounded in
//! time, killed on drop. Talks to the agent over its status socket (JSON lines, the shapes of
//! `haserf::control::model`).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use haserf::control::model::{MemberStatus, MemberView, MembersReply, SlotView, SlotsReply};

use super::addr::alloc_ip;
use super::process::{Launch, Proc};
use super::serf::SERF_PORT;
use super::wait::{try_wait_until, wait_until};

/// Path of the haserf binary cargo built for this test crate.
pub fn haserf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_haserf")
}

/// Sends one JSON request line to a status socket and returns the reply line, parsed.
pub fn status_request(socket: &Path, cmd: &str) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect {socket:?}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(format!("{{\"cmd\":\"{cmd}\"}}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("bad reply ({e}): {line:.300}"))?;
    match v.get("error") {
        Some(err) => Err(format!("agent error: {err}")),
        None => Ok(v),
    }
}

/// How to start one agent.
#[derive(Clone, Debug)]
pub struct HaserfOptions {
    /// `--node`.
    pub node: String,
    /// Address for `--bind IP:7946`; `None` = allocate one.
    pub ip: Option<Ipv4Addr>,
    /// `--tag k=v`.
    pub tags: Vec<(String, String)>,
    /// `--join`.
    pub join: Vec<String>,
    /// `--encrypt`.
    pub encrypt: Option<String>,
    /// `--haproxy-socket` (makes it the load balancer's agent).
    pub haproxy_socket: Option<PathBuf>,
    /// `--backend` specs.
    pub backends: Vec<String>,
    /// `--profile` (default `local`, like the serf peers).
    pub profile: Option<String>,
    /// `--log-level` (default `debug`).
    pub log_level: String,
    /// Any other flags.
    pub extra_args: Vec<String>,
    /// Run inside this network namespace.
    pub netns: Option<String>,
}

impl HaserfOptions {
    /// Defaults for node `name`.
    pub fn new(name: &str) -> HaserfOptions {
        HaserfOptions {
            node: name.to_string(),
            ip: None,
            tags: Vec::new(),
            join: Vec::new(),
            encrypt: None,
            haproxy_socket: None,
            backends: Vec::new(),
            profile: Some("local".into()),
            log_level: "debug".into(),
            extra_args: Vec::new(),
            netns: None,
        }
    }

    /// Adds a tag (builder style).
    pub fn tag(mut self, k: &str, v: &str) -> HaserfOptions {
        self.tags.push((k.to_string(), v.to_string()));
        self
    }

    /// Joins `addr` (builder style).
    pub fn join(mut self, addr: impl ToString) -> HaserfOptions {
        self.join.push(addr.to_string());
        self
    }

    /// Manages HAProxy through `socket`, filling `backend` (builder style).
    pub fn haproxy(mut self, socket: &Path, backend: &str) -> HaserfOptions {
        self.haproxy_socket = Some(socket.to_path_buf());
        self.backends.push(backend.to_string());
        self
    }
}

/// A running `haserf agent`; killed on drop.
pub struct HaserfAgent {
    opts: HaserfOptions,
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl HaserfAgent {
    /// Starts the agent and waits until its status socket answers `status`.
    #[track_caller]
    pub fn start(opts: HaserfOptions) -> HaserfAgent {
        let ip = opts.ip.unwrap_or_else(alloc_ip);
        let dir = tempfile::Builder::new()
            .prefix(&format!("haserf-agent-{}-", opts.node))
            .tempdir()
            .expect("temp dir");
        let mut a = HaserfAgent {
            opts,
            ip,
            dir,
            proc: None,
        };
        a.launch();
        a
    }

    /// The command-line arguments it is started with.
    pub fn args(&self) -> Vec<String> {
        let o = &self.opts;
        let mut args = vec![
            "agent".to_string(),
            "--node".into(),
            o.node.clone(),
            "--bind".into(),
            self.bind_addr().to_string(),
            "--status-socket".into(),
            self.status_socket().display().to_string(),
            "--log-level".into(),
            o.log_level.clone(),
        ];
        for (k, v) in &o.tags {
            args.extend(["--tag".into(), format!("{k}={v}")]);
        }
        for j in &o.join {
            args.extend(["--join".into(), j.clone()]);
        }
        if let Some(k) = &o.encrypt {
            args.extend(["--encrypt".into(), k.clone()]);
        }
        if let Some(s) = &o.haproxy_socket {
            args.extend(["--haproxy-socket".into(), s.display().to_string()]);
        }
        for b in &o.backends {
            args.extend(["--backend".into(), b.clone()]);
        }
        if let Some(p) = &o.profile {
            args.extend(["--profile".into(), p.clone()]);
        }
        args.extend(o.extra_args.iter().cloned());
        args
    }

    #[track_caller]
    fn launch(&mut self) {
        let mut launch = Launch::new(haserf_bin(), &[], self.log_path());
        launch.args = self.args();
        launch.netns = self.opts.netns.clone();
        let mut proc = Proc::spawn(launch);
        let sock = self.status_socket();
        let r = try_wait_until(
            Duration::from_secs(15),
            &format!(
                "haserf agent {} to answer on its status socket",
                self.opts.node
            ),
            || {
                if !proc.is_running() {
                    return Ok(false);
                }
                status_request(&sock, "status").map(|_| true)
            },
        );
        match r {
            Ok(true) => self.proc = Some(proc),
            Ok(false) => panic!(
                "haserf agent {} exited at start-up; log:\n{}",
                self.opts.node,
                proc.log()
            ),
            Err(e) => panic!("{e}\n--- haserf log:\n{}", proc.log()),
        }
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.opts.node
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Gossip address `IP:7946`.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, SERF_PORT))
    }

    /// Its status socket.
    pub fn status_socket(&self) -> PathBuf {
        self.dir.path().join("haserf.sock")
    }

    /// Path of its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("haserf.log")
    }

    /// Its log so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The agent process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.main_pid())
    }

    /// True while it runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// `{"cmd":"status"}`.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        status_request(&self.status_socket(), "status")
    }

    /// `{"cmd":"members"}`, typed.
    pub fn members(&self) -> Result<Vec<MemberView>, String> {
        let v = status_request(&self.status_socket(), "members")?;
        serde_json::from_value::<MembersReply>(v)
            .map(|r| r.members)
            .map_err(|e| e.to_string())
    }

    /// `{"cmd":"slots"}`, typed.
    pub fn slots(&self) -> Result<Vec<SlotView>, String> {
        let v = status_request(&self.status_socket(), "slots")?;
        serde_json::from_value::<SlotsReply>(v)
            .map(|r| r.slots)
            .map_err(|e| e.to_string())
    }

    /// Waits until the agent sees `node` with `status`.
    #[track_caller]
    pub fn wait_status(&self, node: &str, status: MemberStatus, timeout: Duration) {
        wait_until(
            timeout,
            &format!("{} to see {node} as {}", self.name(), status.as_str()),
            || {
                let m = self.members()?;
                if m.iter().any(|m| m.name == node && m.status == status) {
                    Ok(())
                } else {
                    Err(format!(
                        "{:?}",
                        m.iter()
                            .map(|m| (m.name.as_str(), m.status.as_str()))
                            .collect::<Vec<_>>()
                    ))
                }
            },
        )
    }

    /// Graceful leave through the status socket; waits for the process to exit.
    #[track_caller]
    pub fn leave(&mut self) {
        let r = status_request(&self.status_socket(), "leave");
        assert!(r.is_ok(), "leave of {} failed: {r:?}", self.name());
        if let Some(p) = self.proc.as_mut() {
            p.wait_exit(Duration::from_secs(15));
        }
        self.proc = None;
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Sends a signal to the agent (e.g. `"INT"`, `"TERM"`).
    pub fn signal(&self, sig: &str) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// Kills it (if running) and starts it again with the same options.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for HaserfAgent {
    fn drop(&mut self) {
        self.kill();
    }
}
