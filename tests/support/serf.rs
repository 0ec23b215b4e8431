//! Real `serf agent` peers on distinct `127.R.x.y` addresses (gossip on port 7946, RPC on
//! 7373 of the same address), with typed `serf members -format json`, graceful leave,
//! kill -9, restart, log access, user events, queries and tag changes.
//!
//! See /work/shared/ref/serf-peer.md for the behaviour of the peers.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::addr::alloc_ip;
use super::process::{require_binary, short_command, Launch, Proc};
use super::wait::{try_wait_until, wait_until};

/// The gossip port every peer uses on its own address.
pub const SERF_PORT: u16 = 7946;
/// The RPC port every peer uses on its own address.
pub const RPC_PORT: u16 = 7373;

/// One row of `serf members -format json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// `IP:PORT`.
    pub addr: String,
    /// Gossip port.
    pub port: u16,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `alive`, `leaving`, `left` or `failed`.
    pub status: String,
    /// Serf protocol range and version.
    #[serde(default)]
    pub protocol: BTreeMap<String, u8>,
}

#[derive(Deserialize)]
struct MembersJson {
    members: Vec<Member>,
}

/// The reply of `serf query -format json`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct QueryResult {
    /// Nodes that acknowledged.
    #[serde(rename = "Acks", default)]
    pub acks: Vec<String>,
    /// Node → response payload.
    #[serde(rename = "Responses", default)]
    pub responses: BTreeMap<String, String>,
}

/// How to start one peer. Every field has a sensible default ([`SerfOptions::new`]).
#[derive(Clone, Debug)]
pub struct SerfOptions {
    /// Node name.
    pub node: String,
    /// Address to bind (gossip on 7946, RPC on 7373); `None` = allocate one.
    pub ip: Option<Ipv4Addr>,
    /// Tags (`-tag k=v`).
    pub tags: Vec<(String, String)>,
    /// `-encrypt` key (base64).
    pub encrypt: Option<String>,
    /// Keys for a keyring file (first is primary); written to the peer's dir.
    pub keyring: Option<Vec<String>>,
    /// `-profile` (default `local`).
    pub profile: String,
    /// `reconnect_timeout` in the config file (e.g. `"8s"`).
    pub reconnect_timeout: Option<String>,
    /// `tombstone_timeout` in the config file (e.g. `"8s"`).
    pub tombstone_timeout: Option<String>,
    /// Extra config-file keys.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// `-event-handler` specs, e.g. `query:greet=echo hello from $SERF_SELF_NAME`.
    pub event_handlers: Vec<String>,
    /// `-join` addresses (`IP:PORT`).
    pub join: Vec<String>,
    /// Any other flags.
    pub extra_args: Vec<String>,
    /// Run the agent (and its CLI calls) inside this network namespace.
    pub netns: Option<String>,
}

impl SerfOptions {
    /// Defaults for node `name`: local profile, no tags, no key, no join, debug log.
    pub fn new(name: &str) -> SerfOptions {
        SerfOptions {
            node: name.to_string(),
            ip: None,
            tags: Vec::new(),
            encrypt: None,
            keyring: None,
            profile: "local".to_string(),
            reconnect_timeout: None,
            tombstone_timeout: None,
            config: serde_json::Map::new(),
            event_handlers: Vec::new(),
            join: Vec::new(),
            extra_args: Vec::new(),
            netns: None,
        }
    }

    /// Adds a tag (builder style).
    pub fn tag(mut self, k: &str, v: &str) -> SerfOptions {
        self.tags.push((k.to_string(), v.to_string()));
        self
    }

    /// Joins `addr` at start (builder style).
    pub fn join(mut self, addr: impl ToString) -> SerfOptions {
        self.join.push(addr.to_string());
        self
    }

    /// Sets the gossip key (builder style).
    pub fn encrypt(mut self, key: &str) -> SerfOptions {
        self.encrypt = Some(key.to_string());
        self
    }

    /// Adds an event handler (builder style).
    pub fn handler(mut self, spec: &str) -> SerfOptions {
        self.event_handlers.push(spec.to_string());
        self
    }

    /// Sets reconnect and tombstone timeouts, e.g. `"8s"` (builder style).
    pub fn fast_reap(mut self, timeout: &str) -> SerfOptions {
        self.reconnect_timeout = Some(timeout.to_string());
        self.tombstone_timeout = Some(timeout.to_string());
        self
    }
}

/// A new 32-byte gossip key from `serf keygen`.
#[track_caller]
pub fn serf_keygen() -> String {
    require_binary("serf");
    let out = short_command(None, 10, "serf", &["keygen"])
        .output()
        .expect("serf keygen");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A running `serf agent`; killed on drop.
pub struct SerfPeer {
    opts: SerfOptions,
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl SerfPeer {
    /// Starts the agent and waits until its RPC answers `serf members` listing itself.
    /// Panics (with the agent's log) if it exits, e.g. because no `-join` succeeded.
    #[track_caller]
    pub fn start(opts: SerfOptions) -> SerfPeer {
        require_binary("serf");
        let ip = opts.ip.unwrap_or_else(alloc_ip);
        let dir = tempfile::Builder::new()
            .prefix(&format!("haserf-serf-{}-", opts.node))
            .tempdir()
            .expect("temp dir");
        let mut p = SerfPeer {
            opts,
            ip,
            dir,
            proc: None,
        };
        p.launch();
        p
    }

    #[track_caller]
    fn launch(&mut self) {
        let o = &self.opts;
        let mut args = vec![
            "agent".to_string(),
            format!("-node={}", o.node),
            format!("-bind={}:{SERF_PORT}", self.ip),
            format!("-rpc-addr={}:{RPC_PORT}", self.ip),
            format!("-profile={}", o.profile),
            "-log-level=debug".to_string(),
        ];
        for (k, v) in &o.tags {
            args.push("-tag".into());
            args.push(format!("{k}={v}"));
        }
        if let Some(k) = &o.encrypt {
            args.push(format!("-encrypt={k}"));
        }
        if let Some(keys) = &o.keyring {
            let path = self.dir.path().join("keyring.json");
            std::fs::write(&path, serde_json::to_string(keys).unwrap()).expect("keyring");
            args.push(format!("-keyring-file={}", path.display()));
        }
        let mut cfg = o.config.clone();
        if let Some(t) = &o.reconnect_timeout {
            cfg.insert("reconnect_timeout".into(), t.clone().into());
        }
        if let Some(t) = &o.tombstone_timeout {
            cfg.insert("tombstone_timeout".into(), t.clone().into());
        }
        if !cfg.is_empty() {
            let path = self.dir.path().join("serf.json");
            std::fs::write(&path, serde_json::Value::Object(cfg).to_string()).expect("config");
            args.push(format!("-config-file={}", path.display()));
        }
        for h in &o.event_handlers {
            args.push(format!("-event-handler={h}"));
        }
        for j in &o.join {
            args.push(format!("-join={j}"));
        }
        args.extend(o.extra_args.iter().cloned());
        let mut launch = Launch::new("serf", &[], self.log_path());
        launch.args = args;
        launch.netns = o.netns.clone();
        let mut proc = Proc::spawn(launch);
        let name = o.node.clone();
        let r = try_wait_until(
            Duration::from_secs(15),
            &format!("serf agent {name} to answer on RPC"),
            || {
                if !proc.is_running() {
                    return Ok(false);
                }
                match self.try_members() {
                    Ok(m) if m.iter().any(|m| m.name == name && m.status == "alive") => Ok(true),
                    Ok(m) => Err(format!("members: {m:?}")),
                    Err(e) => Err(e),
                }
            },
        );
        match r {
            Ok(true) => self.proc = Some(proc),
            Ok(false) => panic!("serf agent {name} exited at start-up; log:\n{}", proc.log()),
            Err(e) => panic!("{e}\n--- serf log:\n{}", proc.log()),
        }
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.opts.node
    }

    /// The options it was started with.
    pub fn options(&self) -> &SerfOptions {
        &self.opts
    }

    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Gossip address `IP:7946` (what others `-join`).
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, SERF_PORT))
    }

    /// RPC address `IP:7373`.
    pub fn rpc_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, RPC_PORT))
    }

    /// The agent's pid (the `serf` process itself).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.main_pid())
    }

    /// True while the agent process runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// Path of its log (stdout + stderr, debug level; kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serf.log")
    }

    /// Its whole log so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until its log contains `needle` (e.g. `"Suspect n2 has failed"`).
    #[track_caller]
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_until(
            timeout,
            &format!("{} log to contain {needle:?}", self.name()),
            || {
                let log = self.log();
                if log.contains(needle) {
                    Ok(())
                } else {
                    Err(log.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
                }
            },
        )
    }

    /// Runs `serf SUBCOMMAND -rpc-addr=… ARGS…` and returns (success, stdout, stderr).
    pub fn cli(&self, sub: &str, args: &[&str]) -> (bool, String, String) {
        let rpc = format!("-rpc-addr={}", self.rpc_addr());
        let mut all = vec![sub, rpc.as_str()];
        all.extend_from_slice(args);
        match short_command(self.opts.netns.as_deref(), 20, "serf", &all).output() {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (false, String::new(), e.to_string()),
        }
    }

    /// `serf members -format json`, or the error text.
    pub fn try_members(&self) -> Result<Vec<Member>, String> {
        let (ok, out, err) = self.cli("members", &["-format=json"]);
        if !ok {
            return Err(format!("serf members failed: {}{}", out.trim(), err.trim()));
        }
        serde_json::from_str::<MembersJson>(&out)
            .map(|m| m.members)
            .map_err(|e| format!("bad members json ({e}): {out:.300}"))
    }

    /// `serf members -format json`; panics if the agent does not answer.
    #[track_caller]
    pub fn members(&self) -> Vec<Member> {
        self.try_members()
            .unwrap_or_else(|e| panic!("{}: {e}", self.name()))
    }

    /// Name → status as this peer sees it.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        self.try_members()
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.name, m.status))
            .collect()
    }

    /// Waits until this peer sees `node` with `status` (`alive`, `left`, `failed`, …).
    #[track_caller]
    pub fn wait_status(&self, node: &str, status: &str, timeout: Duration) {
        wait_until(
            timeout,
            &format!("{} to see {node} as {status}", self.name()),
            || {
                let s = self.statuses();
                if s.get(node).map(String::as_str) == Some(status) {
                    Ok(())
                } else {
                    Err(s)
                }
            },
        )
    }

    /// Waits until this peer no longer lists `node` at all (reaped).
    #[track_caller]
    pub fn wait_gone(&self, node: &str, timeout: Duration) {
        wait_until(
            timeout,
            &format!("{} to forget {node}", self.name()),
            || {
                let s = self.statuses();
                if s.contains_key(node) {
                    Err(s)
                } else {
                    Ok(())
                }
            },
        )
    }

    /// Graceful leave (`serf leave`); waits for the agent to exit.
    #[track_caller]
    pub fn leave(&mut self) {
        let (ok, out, err) = self.cli("leave", &[]);
        assert!(ok, "serf leave of {} failed: {out}{err}", self.name());
        if let Some(p) = self.proc.as_mut() {
            p.wait_exit(Duration::from_secs(15));
        }
        self.proc = None;
    }

    /// kill -9 (no leave: peers will detect a failure).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Sends a signal to the agent (`"INT"` = graceful leave, `"TERM"` = no leave).
    pub fn signal(&self, sig: &str) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// Starts it again on the same address with the same options (kills it first if it
    /// still runs). `join` overrides the join addresses (e.g. when the seed is gone).
    #[track_caller]
    pub fn restart(&mut self, join: Option<Vec<String>>) {
        self.kill();
        if let Some(j) = join {
            self.opts.join = j;
        }
        let marker = format!("\n==== harness: restart of {} ====\n", self.name());
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log_path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, marker.as_bytes()));
        self.launch();
    }

    /// `serf join ADDR` from the running agent.
    #[track_caller]
    pub fn join(&self, addr: &str) {
        let (ok, out, err) = self.cli("join", &[addr]);
        assert!(
            ok,
            "serf join {addr} from {} failed: {out}{err}",
            self.name()
        );
    }

    /// `serf event -coalesce=false NAME PAYLOAD`.
    #[track_caller]
    pub fn event(&self, name: &str, payload: &str) {
        let (ok, out, err) = self.cli("event", &["-coalesce=false", name, payload]);
        assert!(
            ok,
            "serf event {name} from {} failed: {out}{err}",
            self.name()
        );
    }

    /// `serf query -format json -timeout T [extra…] NAME PAYLOAD`.
    #[track_caller]
    pub fn query(
        &self,
        name: &str,
        payload: &str,
        timeout: Duration,
        extra: &[&str],
    ) -> QueryResult {
        let t = format!("-timeout={}ms", timeout.as_millis());
        let mut args = vec!["-format=json", t.as_str()];
        args.extend_from_slice(extra);
        args.push(name);
        args.push(payload);
        let (ok, out, err) = self.cli("query", &args);
        assert!(
            ok,
            "serf query {name} from {} failed: {out}{err}",
            self.name()
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad query json ({e}): {out}"))
    }

    /// `serf tags -set k=v` (and `-delete` for each of `delete`).
    #[track_caller]
    pub fn tags_set(&self, set: &[(&str, &str)], delete: &[&str]) {
        let mut args = Vec::new();
        for (k, v) in set {
            args.push("-set".to_string());
            args.push(format!("{k}={v}"));
        }
        for k in delete {
            args.push("-delete".to_string());
            args.push(k.to_string());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = self.cli("tags", &refs);
        assert!(ok, "serf tags on {} failed: {out}{err}", self.name());
    }
}

impl Drop for SerfPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N peers joined to the first one.
pub struct SerfCluster {
    /// The peers, in start order; `peers[0]` is the seed.
    pub peers: Vec<SerfPeer>,
}

impl SerfCluster {
    /// Starts `n` peers named `{prefix}1..{prefix}n` (local profile), lets `customize` adjust
    /// each one's options (index, options), joins peers 2..n to peer 1 (plus any `join` set
    /// by `customize`), and waits until every peer sees all of them alive.
    #[track_caller]
    pub fn start(
        n: usize,
        prefix: &str,
        mut customize: impl FnMut(usize, SerfOptions) -> SerfOptions,
    ) -> SerfCluster {
        let mut peers: Vec<SerfPeer> = Vec::new();
        for i in 0..n {
            let mut o = SerfOptions::new(&format!("{prefix}{}", i + 1));
            if let Some(seed) = peers.first() {
                o = o.join(seed.bind_addr());
            }
            peers.push(SerfPeer::start(customize(i, o)));
        }
        let c = SerfCluster { peers };
        c.wait_converged(Duration::from_secs(20));
        c
    }

    /// The seed's gossip address (what an extra node should `-join`).
    pub fn seed_addr(&self) -> SocketAddr {
        self.peers[0].bind_addr()
    }

    /// Waits until every running peer sees every peer's name as `alive`.
    #[track_caller]
    pub fn wait_converged(&self, timeout: Duration) {
        let names: Vec<&str> = self.peers.iter().map(|p| p.name()).collect();
        self.wait_all_see(&names, "alive", timeout);
    }

    /// Waits until every peer in `self.peers` that is alive itself sees each of `nodes`
    /// with `status`.
    #[track_caller]
    pub fn wait_all_see(&self, nodes: &[&str], status: &str, timeout: Duration) {
        wait_until(
            timeout,
            &format!("all peers to see {nodes:?} as {status}"),
            || {
                let mut views = BTreeMap::new();
                let mut ok = true;
                for p in &self.peers {
                    let Ok(m) = p.try_members() else { continue };
                    let s: BTreeMap<String, String> =
                        m.into_iter().map(|m| (m.name, m.status)).collect();
                    ok &= nodes
                        .iter()
                        .all(|n| s.get(*n).map(String::as_str) == Some(status));
                    views.insert(p.name().to_string(), s);
                }
                if ok {
                    Ok(())
                } else {
                    Err(views)
                }
            },
        )
    }

    /// The peer called `name`.
    #[track_caller]
    pub fn peer(&mut self, name: &str) -> &mut SerfPeer {
        self.peers
            .iter_mut()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("no peer {name}"))
    }
}
