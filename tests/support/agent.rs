//! (`support::agent`) The `haserf agent` binary as a separate process (bounded by `timeout`, killed by PID),
//! with its status socket; "web nodes" (a real `serf agent` plus a real HTTP app on the same
//! address, tagged `role`/`port`); and a watcher that records every admin-state transition of
//! HAProxy's slots, so a test can prove "drained, then freed".

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::addr::alloc_ip;
use super::haproxy::runtime_command;
use super::http::HttpBackend;
use super::process::{short_command, Launch, Proc};
use super::serf::{SerfOptions, SerfPeer, SERF_PORT};
use super::wait::{try_wait_until, wait_until};

/// Path of the haserf binary under test.
pub fn haserf_bin() -> &'static str {
    env!("CARGO_BIN_EXE_haserf")
}

/// How to start a `haserf agent`.
#[derive(Clone, Debug)]
pub struct HaserfOptions {
    /// `--node`.
    pub node: String,
    /// Gossip address (`--bind IP:7946`); allocated when `None`.
    pub ip: Option<Ipv4Addr>,
    /// `--haproxy-socket`.
    pub haproxy_socket: Option<PathBuf>,
    /// `--backend` values.
    pub backends: Vec<String>,
    /// `--join` seeds.
    pub join: Vec<SocketAddr>,
    /// Any other arguments.
    pub extra: Vec<String>,
    /// Extra environment. `HASERF_STATUS_SOCKET` here replaces the harness's own
    /// `--status-socket` flag (the agent then finds its socket through the variable).
    pub env: Vec<(String, String)>,
}

impl HaserfOptions {
    /// An agent called `node` managing `backend` through `socket`.
    pub fn manager(node: &str, socket: &Path, backend: &str) -> HaserfOptions {
        HaserfOptions {
            node: node.to_string(),
            ip: None,
            haproxy_socket: Some(socket.to_path_buf()),
            backends: vec![backend.to_string()],
            join: Vec::new(),
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// A plain cluster member called `node` (no `--haproxy-socket`: backend-node mode).
    pub fn member(node: &str) -> HaserfOptions {
        HaserfOptions {
            node: node.to_string(),
            ip: None,
            haproxy_socket: None,
            backends: Vec::new(),
            join: Vec::new(),
            extra: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds a seed (builder style).
    pub fn join(mut self, addr: SocketAddr) -> HaserfOptions {
        self.join.push(addr);
        self
    }

    /// Adds an environment variable (builder style).
    pub fn env(mut self, k: &str, v: &str) -> HaserfOptions {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Adds raw arguments (builder style).
    pub fn args(mut self, args: &[&str]) -> HaserfOptions {
        self.extra.extend(args.iter().map(|s| s.to_string()));
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
    /// Starts the agent and waits until its status socket answers `status`. Panics with the
    /// agent's log if it exits first.
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

    /// The arguments the agent is started with (after `agent`).
    pub fn args(&self) -> Vec<String> {
        let o = &self.opts;
        let mut args = vec![
            "agent".to_string(),
            format!("--node={}", o.node),
            format!("--bind={}", self.bind_addr()),
            "--profile=local".to_string(),
            "--log-level=debug".to_string(),
        ];
        if self.socket_from_env().is_none() {
            args.push(format!(
                "--status-socket={}",
                self.status_socket().display()
            ));
        }
        if let Some(s) = &o.haproxy_socket {
            args.push(format!("--haproxy-socket={}", s.display()));
        }
        for b in &o.backends {
            args.push(format!("--backend={b}"));
        }
        for j in &o.join {
            args.push(format!("--join={j}"));
        }
        // Serf's RPC on the agent's own address (the default 127.0.0.1:7373 would be shared).
        if !o.extra.iter().any(|a| a.starts_with("--rpc-addr")) {
            args.push(format!("--rpc-addr={}", self.rpc_addr()));
        }
        args.extend(o.extra.iter().cloned());
        args
    }

    /// Serf RPC address `IP:7373` (unless the test passed its own `--rpc-addr`).
    pub fn rpc_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, super::serf::RPC_PORT))
    }

    /// Runs the stock `serf SUBCOMMAND -rpc-addr=<this agent> ARGS…` against this agent;
    /// (success, stdout, stderr).
    pub fn serf_cli(&self, sub: &str, args: &[&str]) -> (bool, String, String) {
        let rpc = format!("-rpc-addr={}", self.rpc_addr());
        let mut all = vec![sub, rpc.as_str()];
        all.extend_from_slice(args);
        match short_command(None, 30, "serf", &all).output() {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (false, String::new(), e.to_string()),
        }
    }

    #[track_caller]
    fn launch(&mut self) {
        let mut launch = Launch::new(haserf_bin(), &[], self.log_path());
        launch.args = self.args();
        launch.env = self.opts.env.clone();
        let mut proc = Proc::spawn(launch);
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
                self.request(r#"{"cmd":"status"}"#).map(|_| true)
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

    /// Gossip address `IP:7946`.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, SERF_PORT))
    }

    /// The status socket path.
    pub fn status_socket(&self) -> PathBuf {
        if let Some(path) = self.socket_from_env() {
            return path;
        }
        self.dir.path().join("haserf.sock")
    }

    /// `HASERF_STATUS_SOCKET` from the options' environment, if set.
    fn socket_from_env(&self) -> Option<PathBuf> {
        self.opts
            .env
            .iter()
            .find(|(k, _)| k == "HASERF_STATUS_SOCKET")
            .map(|(_, v)| PathBuf::from(v))
    }

    /// The agent's log (all runs).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The log lines that record slot changes, member events and guard decisions (for
    /// failure messages).
    pub fn decisions(&self) -> String {
        self.log()
            .lines()
            .filter(|l| {
                [
                    "slot change",
                    "member event",
                    "partition guard",
                    "refused",
                    "freed",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The agent's pid.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.main_pid())
    }

    /// Sends one raw line on a fresh status-socket connection and returns the reply object.
    pub fn request(&self, line: &str) -> Result<Value, String> {
        let lines = self.exchange(&[line])?;
        lines
            .into_iter()
            .next()
            .ok_or_else(|| "no reply".to_string())
    }

    /// Sends several raw lines on one connection; returns one reply per line.
    pub fn exchange(&self, lines: &[&str]) -> Result<Vec<Value>, String> {
        let path = self.status_socket();
        let mut s = UnixStream::connect(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        // The agent may answer and close before a (too long) line is fully written: a
        // failed write still leaves its reply to read.
        for l in lines {
            if s.write_all(l.as_bytes())
                .and_then(|_| s.write_all(b"\n"))
                .is_err()
            {
                break;
            }
        }
        let mut r = BufReader::new(s);
        let mut out = Vec::new();
        for _ in lines {
            let mut line = String::new();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            out.push(serde_json::from_str(&line).map_err(|e| format!("bad reply {line:?}: {e}"))?);
        }
        Ok(out)
    }

    /// `{"cmd":"status"}`.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.request(r#"{"cmd":"status"}"#)
            .unwrap_or_else(|e| panic!("status: {e}\n--- log:\n{}", self.log()))
    }

    /// `{"cmd":"slots"}`: the `slots` array.
    pub fn try_slots(&self) -> Result<Vec<Slot>, String> {
        let v = self.request(r#"{"cmd":"slots"}"#)?;
        serde_json::from_value::<SlotsJson>(v.clone())
            .map(|s| s.slots)
            .map_err(|e| format!("bad slots reply ({e}): {v}"))
    }

    /// Member → slot for members whose slot is `ready` and `UP` in HAProxy.
    pub fn serving(&self) -> BTreeMap<String, String> {
        self.try_slots()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.state == "ready" && s.haproxy_status.starts_with("UP"))
            .filter_map(|s| s.member.map(|m| (m, s.slot)))
            .collect()
    }

    /// Member → slot for every slot holding a member (any state).
    pub fn placed(&self) -> BTreeMap<String, String> {
        self.try_slots()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.member.map(|m| (m, s.slot)))
            .collect()
    }

    /// Waits until exactly `members` are serving (ready and UP); returns member → slot.
    #[track_caller]
    pub fn wait_serving(&self, members: &[&str], timeout: Duration) -> BTreeMap<String, String> {
        let mut want: Vec<String> = members.iter().map(|s| s.to_string()).collect();
        want.sort();
        wait_until(
            timeout,
            &format!("{} to serve exactly {members:?}", self.name()),
            || {
                let s = self.serving();
                if s.keys().cloned().collect::<Vec<_>>() == want {
                    Ok(s)
                } else {
                    Err(self.try_slots().map(|v| {
                        v.into_iter()
                            .filter(|s| s.member.is_some() || s.state != "maint")
                            .collect::<Vec<_>>()
                    }))
                }
            },
        )
    }

    /// Member names as the agent sees them, with their status.
    pub fn member_statuses(&self) -> BTreeMap<String, String> {
        self.request(r#"{"cmd":"members"}"#)
            .ok()
            .and_then(|v| v["members"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                Some((
                    m["name"].as_str()?.to_string(),
                    m["status"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// Prometheus text from `{"cmd":"metrics"}`.
    #[track_caller]
    pub fn metrics(&self) -> String {
        let v = self
            .request(r#"{"cmd":"metrics"}"#)
            .unwrap_or_else(|e| panic!("metrics: {e}"));
        v["metrics"]
            .as_str()
            .unwrap_or_else(|| panic!("no metrics text in {v}"))
            .to_string()
    }

    /// Runs `haserf SUB --status-socket S ARGS…`; returns (success, stdout, stderr).
    pub fn cli(&self, sub: &str, args: &[&str]) -> (bool, String, String) {
        let sock = format!("--status-socket={}", self.status_socket().display());
        let mut all = vec![sub, sock.as_str()];
        all.extend_from_slice(args);
        run_haserf(&all)
    }

    /// Sends a signal to the agent process.
    pub fn signal(&self, sig: &str) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// Waits for the agent to exit; returns its exit code (`None` if it did not exit).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let p = self.proc.as_mut()?;
        let st = p.wait_exit(timeout)?;
        self.proc = None;
        // `timeout` passes the program's exit status through.
        st.code()
    }

    /// True while the agent runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again (same name, address, socket and flags); kills it first if needed.
    #[track_caller]
    pub fn restart(&mut self) {
        self.kill();
        let marker = format!("\n==== harness: restart of {} ====\n", self.name());
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log_path())
            .and_then(|mut f| f.write_all(marker.as_bytes()));
        self.launch();
    }
}

impl Drop for HaserfAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the haserf binary once (bounded to 20 s); returns (success, stdout, stderr).
pub fn run_haserf(args: &[&str]) -> (bool, String, String) {
    match short_command(None, 20, haserf_bin(), args).output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), e.to_string()),
    }
}

/// One row of the agent's `{"slots":[…]}`.
#[derive(Clone, Debug, serde::Deserialize, PartialEq, Eq)]
pub struct Slot {
    /// Backend.
    pub backend: String,
    /// Slot (server) name.
    pub slot: String,
    /// Member, or `None` when free.
    pub member: Option<String>,
    /// `IP:PORT` or `None` when free.
    pub addr: Option<String>,
    /// `ready`, `drain` or `maint`.
    pub state: String,
    /// HAProxy's status string.
    pub haproxy_status: String,
}

#[derive(serde::Deserialize)]
struct SlotsJson {
    slots: Vec<Slot>,
}

/// A web node: a real `serf agent` tagged `role=ROLE port=P` and a real HTTP app listening
/// on the same address, port P, answering with the node's name.
pub struct WebNode {
    /// The serf agent.
    pub serf: SerfPeer,
    /// The HTTP app.
    pub app: HttpBackend,
}

impl WebNode {
    /// Starts node `name` with role `web`, joined to `join` (if any).
    #[track_caller]
    pub fn start(name: &str, join: Option<SocketAddr>) -> WebNode {
        WebNode::start_with(name, join, |o| o.tag("role", "web"))
    }

    /// Starts node `name` on a fresh address; `customize` adjusts the serf options (the
    /// `port` tag is set afterwards to the app's port).
    #[track_caller]
    pub fn start_with(
        name: &str,
        join: Option<SocketAddr>,
        customize: impl FnOnce(SerfOptions) -> SerfOptions,
    ) -> WebNode {
        let ip = alloc_ip();
        let app = HttpBackend::start_on(name, SocketAddr::from((ip, 0)));
        let mut o = SerfOptions::new(name);
        o.ip = Some(ip);
        if let Some(j) = join {
            o = o.join(j);
        }
        let o = customize(o).tag("port", &app.addr().port().to_string());
        WebNode {
            serf: SerfPeer::start(o),
            app,
        }
    }

    /// Node name.
    pub fn name(&self) -> &str {
        self.serf.name()
    }

    /// `IP:PORT` of the app (what the slot should hold).
    pub fn app_addr(&self) -> SocketAddr {
        self.app.addr()
    }
}

/// Starts `n` web nodes `{prefix}1..{prefix}n`, all joined to the first.
#[track_caller]
pub fn web_nodes(n: usize, prefix: &str) -> Vec<WebNode> {
    let mut nodes: Vec<WebNode> = Vec::new();
    for i in 1..=n {
        let seed = nodes.first().map(|w| w.serf.bind_addr());
        nodes.push(WebNode::start(&format!("{prefix}{i}"), seed));
    }
    nodes
}

/// One observed admin state of a slot: (`ready`|`drain`|`maint`, `IP:PORT`).
#[derive(Clone, Debug, PartialEq)]
pub struct SlotObservation {
    /// Seconds since the watcher started.
    pub at: f64,
    /// `ready`, `drain` or `maint` (from `srv_admin_state`).
    pub admin: String,
    /// `IP:PORT` of the slot.
    pub addr: String,
}

/// Polls `show servers state BACKEND` every 10 ms on a background thread and records every
/// change of each slot's admin state and address.
pub struct SlotWatcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<String, Vec<SlotObservation>>>>,
    handle: Option<JoinHandle<()>>,
}

impl SlotWatcher {
    /// Starts watching `backend` through the admin socket `socket`.
    pub fn start(socket: &Path, backend: &str) -> SlotWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<String, Vec<SlotObservation>>>> = Arc::default();
        let handle = {
            let (stop, seen) = (stop.clone(), seen.clone());
            let socket = socket.to_path_buf();
            let cmd = format!("show servers state {backend}");
            std::thread::spawn(move || {
                let t0 = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(text) = runtime_command(&socket, &cmd) {
                        if let Ok(st) = haserf::haproxy::servers_state::ServersState::parse(&text) {
                            let mut seen = seen.lock().unwrap();
                            for s in &st.servers {
                                let admin = if s.in_maint() {
                                    "maint"
                                } else if s.draining() {
                                    "drain"
                                } else {
                                    "ready"
                                };
                                let addr = format!(
                                    "{}:{}",
                                    s.addr.map(|a| a.to_string()).unwrap_or_default(),
                                    s.port.unwrap_or(0)
                                );
                                let list = seen.entry(s.server.to_string()).or_default();
                                if list
                                    .last()
                                    .is_none_or(|l| l.admin != admin || l.addr != addr)
                                {
                                    list.push(SlotObservation {
                                        at: t0.elapsed().as_secs_f64(),
                                        admin: admin.to_string(),
                                        addr,
                                    });
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        SlotWatcher {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// Every observation of `slot` so far.
    pub fn history(&self, slot: &str) -> Vec<SlotObservation> {
        self.seen
            .lock()
            .unwrap()
            .get(slot)
            .cloned()
            .unwrap_or_default()
    }

    /// The admin states of `slot` in order, consecutive duplicates (address-only changes)
    /// merged.
    pub fn admin_states(&self, slot: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for o in self.history(slot) {
            if out.last() != Some(&o.admin) {
                out.push(o.admin);
            }
        }
        out
    }

    /// Waits until the latest observation of `slot` has admin state `admin`.
    #[track_caller]
    pub fn wait_admin(&self, slot: &str, admin: &str, timeout: Duration) {
        wait_until(
            timeout,
            &format!("HAProxy to show slot {slot} in {admin}"),
            || match self.history(slot).last() {
                Some(o) if o.admin == admin => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
    }

    /// Every slot's history.
    pub fn all(&self) -> BTreeMap<String, Vec<SlotObservation>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for SlotWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
