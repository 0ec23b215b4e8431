//! The bench topology with one side on the lb host: HAProxy plus
//! - baseline: a stock `serf agent` whose member-join/leave/failed handler renders haproxy.cfg
//!   from `serf members -status=alive` and reloads HAProxy (SIGUSR2 to the master);
//! - poll: a stock `serf agent` and the simplest no-reload design, a small script that polls
//!   `serf members` every 100 ms and fills the same server-template slots through the
//!   runtime API, with no gating ([`POLLER`]);
//! - haserf: `haserf agent --haproxy-socket … --backend web` filling server-template slots,
//!   with `--admit check` (and the probe matching the bench's check) or `--admit gossip`.
//!
//! Web hosts run the HTTP app and a stock `serf agent` (`role=web`, `port=8080`), or
//! `haserf agent` in backend-node mode.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::haproxy::{self, APP_PORT, FRONTEND_PORT};
use super::topology::{wait_for, Host, Lab, Proc};

/// Which design runs on the lb host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Serf event handler + re-rendered haproxy.cfg + reload.
    Baseline,
    /// Serf + a script polling `serf members` every 100 ms + runtime API, no gating.
    Poll,
    /// haserf agent + runtime API, no reload, `--admit check` (probe `http:/health`).
    Haserf,
    /// The same with `--admit gossip`.
    HaserfGossip,
}

impl Side {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Poll => "poll",
            Side::Haserf => "haserf (admit check)",
            Side::HaserfGossip => "haserf (admit gossip)",
        }
    }
}

/// The poll rival: every PERIOD seconds, `serf members` (alive, `role=web`) → the slots, in
/// one runtime-API exchange per change; a new member is set `ready` at once (no gating), a
/// gone one `maint`. What a user writes in an afternoon.
const POLLER: &str = r#"#!/usr/bin/env python3
# poll.py SOCKET BACKEND SLOTS PERIOD
import json, socket, subprocess, sys, time

sock_path, backend, slots, period = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def runtime(lines):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(("; ".join(lines) + "\n").encode())
    while s.recv(65536):
        pass
    s.close()

placed = {}  # "ip:port" -> slot
free = [f"{backend}{i}" for i in range(1, slots + 1)]
while True:
    start = time.monotonic()
    try:
        out = subprocess.run(
            ["serf", "members", "-rpc-addr=127.0.0.1:7373", "-status=alive",
             "-tag", "role=web", "-format=json"],
            capture_output=True, timeout=5, check=True).stdout
        want = set()
        for m in json.loads(out)["members"]:
            ip = m["addr"].rsplit(":", 1)[0]
            want.add(f'{ip}:{m["tags"].get("port", "8080")}')
        lines = []
        for addr in [a for a in placed if a not in want]:
            slot = placed.pop(addr)
            free.append(slot)
            lines += [f"set server {backend}/{slot} state maint",
                      f"set server {backend}/{slot} addr 127.0.0.1 port 9"]
        for addr in sorted(want - placed.keys()):
            if not free:
                break
            slot = free.pop(0)
            placed[addr] = slot
            ip, port = addr.rsplit(":", 1)
            lines += [f"set server {backend}/{slot} addr {ip} port {port}",
                      f"set server {backend}/{slot} state ready"]
        if lines:
            runtime(lines)
    except Exception as e:
        print(f"poll: {e}", file=sys.stderr, flush=True)
    time.sleep(max(0.0, period - (time.monotonic() - start)))
"#;

/// The poll side's period.
pub const POLL_PERIOD: Duration = Duration::from_millis(100);

/// The agent a web host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebAgent {
    /// Stock `serf agent`.
    Serf,
    /// `haserf agent` without --haproxy-socket (backend-node mode).
    Haserf,
}

/// The gossip port every agent binds.
pub const GOSSIP_PORT: u16 = 7946;

/// The baseline's event handler: render haproxy.cfg from `serf members`, then reload.
const HANDLER: &str = r#"#!/bin/sh
# Baseline (the design haserf replaces): on member-join/leave/failed, render haproxy.cfg
# from the alive members with role=web and reload HAProxy (master-worker, SIGUSR2).
set -e
dir="$(dirname "$0")"
cat >/dev/null   # the event's member lines; the handler re-reads the whole membership
{
  cat "$dir/haproxy.head.cfg"
  serf members -rpc-addr 127.0.0.1:7373 -status=alive -tag role=web |
  while read -r name addr status tags; do
    port=$(printf '%s\n' "$tags" | tr ',' '\n' | sed -n 's/^port=//p')
    echo "    server $name ${addr%:*}:${port:-8080}"
  done
} >"$dir/haproxy.cfg.new"
mv "$dir/haproxy.cfg.new" "$dir/haproxy.cfg"
echo "$SERF_EVENT" >>"$dir/reloads.log"
kill -USR2 "$(cat "$dir/haproxy.pid")"
"#;

/// A web host and what runs on it.
pub struct Web {
    /// The host.
    pub host: Host,
    /// The node name the current agent uses.
    pub node: Option<String>,
    app: Option<Proc>,
    agent: Option<Proc>,
    kind: WebAgent,
}

impl Web {
    /// `IP:PORT` of the app, as HAProxy shows it.
    pub fn app_addr(&self) -> String {
        format!("{}:{APP_PORT}", self.host.ip)
    }

    /// Whether an agent is running.
    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }
}

/// The whole topology.
pub struct Cluster {
    /// The lab (namespaces, processes).
    pub lab: Lab,
    /// Which side runs on the lb host.
    pub side: Side,
    /// The load balancer host.
    pub lb: Host,
    /// The load generator's host.
    pub client: Host,
    /// Web hosts by host name.
    pub webs: BTreeMap<String, Web>,
    /// Gossip key, when the cluster is encrypted.
    pub encrypt: Option<String>,
    haproxy: Option<Proc>,
    lb_agent: Option<Proc>,
    poller: Option<Proc>,
    slots: u32,
    seq: u32,
    master_pid: Option<u32>,
}

/// Address of the `i`-th web host (1-based), 198.18.1.1 onwards.
pub fn web_ip(i: u32) -> Ipv4Addr {
    let k = i - 1;
    Ipv4Addr::new(198, 18, 1 + (k / 250) as u8, 1 + (k % 250) as u8)
}

/// The haserf binary: `$HASERF_BIN`, else next to this bench binary.
pub fn haserf_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HASERF_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("haserf")))
        .unwrap_or_else(|| PathBuf::from("haserf"))
}

impl Cluster {
    /// Builds lb, client and `webs` web hosts (`web1`…); starts nothing yet.
    pub fn new(side: Side, webs: u32, slots: u32, proc_timeout: u64) -> Result<Cluster, String> {
        super::topology::require("haproxy")?;
        super::topology::require("serf")?;
        let mut lab = Lab::new(proc_timeout)?;
        let lb = lab.add_host("lb", Ipv4Addr::new(198, 18, 0, 1))?;
        let client = lab.add_host("client", Ipv4Addr::new(198, 18, 0, 2))?;
        let mut map = BTreeMap::new();
        for i in 1..=webs {
            let name = format!("web{i}");
            let host = lab.add_host(&name, web_ip(i))?;
            map.insert(
                name,
                Web {
                    host,
                    node: None,
                    app: None,
                    agent: None,
                    kind: WebAgent::Serf,
                },
            );
        }
        Ok(Cluster {
            lab,
            side,
            lb,
            client,
            webs: map,
            encrypt: None,
            haproxy: None,
            lb_agent: None,
            poller: None,
            slots,
            seq: 0,
            master_pid: None,
        })
    }

    /// The frontend address the client sends to.
    pub fn frontend(&self) -> String {
        format!("{}:{FRONTEND_PORT}", self.lb.ip)
    }

    /// The gossip address of the lb host (the seed everyone joins).
    pub fn seed(&self) -> String {
        format!("{}:{GOSSIP_PORT}", self.lb.ip)
    }

    /// HAProxy's admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        haproxy::admin_socket(self.lab.dir())
    }

    /// The lb agent's status socket (haserf side).
    pub fn status_socket(&self) -> PathBuf {
        self.lab.dir().join("lb-haserf.sock")
    }

    /// HAProxy's process group (master and workers).
    pub fn haproxy_pgid(&self) -> Option<u32> {
        self.haproxy.as_ref().map(|p| p.pgid)
    }

    /// Remembers HAProxy's master pid, for [`Cluster::check_haproxy_pid`].
    pub fn note_haproxy_pid(&mut self) -> Result<(), String> {
        self.master_pid =
            Some(haproxy::master_pid(self.lab.dir()).ok_or("HAProxy wrote no pid file")?);
        Ok(())
    }

    /// Fails if HAProxy's master pid changed since [`Cluster::note_haproxy_pid`] (a reload
    /// keeps it; a crash or restart does not).
    pub fn check_haproxy_pid(&self) -> Result<(), String> {
        let now = haproxy::master_pid(self.lab.dir());
        if now != self.master_pid {
            return Err(format!(
                "HAProxy's master pid changed: {:?} → {now:?}",
                self.master_pid
            ));
        }
        Ok(())
    }

    /// HAProxy reloads so far, as its master counts them (the same measure on both sides).
    pub fn reloads(&self) -> usize {
        haproxy::master_reloads(self.lab.dir()).unwrap_or(0) as usize
    }

    /// Starts HAProxy, then the lb side's agent; returns once both answer.
    pub fn start_lb(&mut self) -> Result<(), String> {
        self.start_haproxy()?;
        self.start_lb_agent()
    }

    /// Starts (or restarts) HAProxy with the side's config.
    pub fn start_haproxy(&mut self) -> Result<(), String> {
        let dir = self.lab.dir().to_path_buf();
        let head = haproxy::config_head(&dir, self.lb.ip);
        let cfg = dir.join("haproxy.cfg");
        match self.side {
            Side::Baseline => {
                std::fs::write(dir.join("haproxy.head.cfg"), &head).map_err(|e| e.to_string())?;
                if !cfg.exists() {
                    std::fs::write(&cfg, &head).map_err(|e| e.to_string())?;
                }
            }
            Side::Poll | Side::Haserf | Side::HaserfGossip => {
                std::fs::write(&cfg, head + &haproxy::slots_section(self.slots))
                    .map_err(|e| e.to_string())?;
            }
        }
        let _ = std::fs::remove_file(haproxy::admin_socket(&dir));
        let _ = std::fs::remove_file(haproxy::pid_file(&dir));
        let proc = self
            .lab
            .spawn(&self.lb, "haproxy", "haproxy", &haproxy::args(&dir, &cfg))?;
        self.haproxy = Some(proc);
        let sock = haproxy::admin_socket(&dir);
        let res = wait_for(Duration::from_secs(10), "HAProxy's admin socket", || {
            (haproxy::worker_pid(&sock).is_some() && haproxy::master_pid(&dir).is_some())
                .then_some(())
        });
        if let Err(e) = res {
            let tail = self
                .haproxy
                .as_ref()
                .map(|p| p.log_tail())
                .unwrap_or_default();
            return Err(format!("{e}\n{tail}"));
        }
        Ok(())
    }

    /// Starts the lb side's agent (serf + handler, or haserf).
    pub fn start_lb_agent(&mut self) -> Result<(), String> {
        let dir = self.lab.dir().to_path_buf();
        let bind = self.seed();
        let proc = match self.side {
            Side::Baseline | Side::Poll => {
                let handler = dir.join("handler.sh");
                std::fs::write(&handler, HANDLER).map_err(|e| e.to_string())?;
                super::topology::run("chmod", &["755", &handler.display().to_string()])?;
                let mut args = vec![
                    "agent".to_string(),
                    "-node=lb".into(),
                    format!("-bind={bind}"),
                    "-rpc-addr=127.0.0.1:7373".into(),
                    "-log-level=warn".into(),
                ];
                if self.side == Side::Baseline {
                    args.push(format!(
                        "-event-handler=member-join,member-leave,member-failed={}",
                        handler.display()
                    ));
                }
                if let Some(k) = &self.encrypt {
                    args.push(format!("-encrypt={k}"));
                }
                let p = self.lab.spawn(&self.lb, "lb-serf", "serf", &args)?;
                let lb = self.lb.clone();
                let lab = &self.lab;
                wait_for(Duration::from_secs(10), "the lb serf agent's RPC", || {
                    lab.exec(&lb, "serf", &["members", "-rpc-addr=127.0.0.1:7373"])
                        .ok()
                })
                .map_err(|e| format!("{e}\n{}", p.log_tail()))?;
                if self.side == Side::Poll {
                    let script = dir.join("poll.py");
                    std::fs::write(&script, POLLER).map_err(|e| e.to_string())?;
                    let args = vec![
                        script.display().to_string(),
                        self.admin_socket().display().to_string(),
                        "web".into(),
                        self.slots.to_string(),
                        POLL_PERIOD.as_secs_f64().to_string(),
                    ];
                    self.poller = Some(self.lab.spawn(&self.lb, "lb-poll", "python3", &args)?);
                }
                p
            }
            Side::Haserf | Side::HaserfGossip => {
                let status = self.status_socket();
                let _ = std::fs::remove_file(&status);
                let mut args = vec![
                    "agent".to_string(),
                    "--node".into(),
                    "lb".into(),
                    "--bind".into(),
                    bind,
                    "--haproxy-socket".into(),
                    self.admin_socket().display().to_string(),
                    "--backend".into(),
                    "web".into(),
                    "--status-socket".into(),
                    status.display().to_string(),
                ];
                // check mode's probe is the backend's check (`option httpchk GET /health`)
                args.extend(match self.side {
                    Side::HaserfGossip => ["--admit".to_string(), "web=gossip".into()],
                    _ => ["--admit-probe".to_string(), "web=http:/health".into()],
                });
                if let Some(k) = &self.encrypt {
                    args.push("--encrypt".into());
                    args.push(k.clone());
                }
                let bin = haserf_bin();
                let mut p = self.lab.spawn_with(
                    &self.lb,
                    "lb-haserf",
                    &bin.display().to_string(),
                    &args,
                    &[("RUST_LOG", "info".into())],
                    false,
                )?;
                let res = wait_for(Duration::from_secs(15), "the haserf agent's status", || {
                    if p.exited().is_some() {
                        return Some(false);
                    }
                    let out = std::process::Command::new(&bin)
                        .args(["status", "--status-socket"])
                        .arg(&status)
                        .output()
                        .ok()?;
                    // exit 2: nothing answers yet (1: answers, not ready)
                    (out.status.code() != Some(2)).then_some(true)
                });
                match res {
                    Ok(true) => p,
                    Ok(false) => {
                        return Err(format!(
                            "the haserf agent exited at start (is `haserf agent` implemented in {}?)\n{}",
                            bin.display(),
                            p.log_tail()
                        ))
                    }
                    Err(e) => return Err(format!("{e}\n{}", p.log_tail())),
                }
            }
        };
        self.lb_agent = Some(proc);
        Ok(())
    }

    /// Starts the app on web host `name` (it answers as `name`).
    pub fn start_app(&mut self, name: &str) -> Result<(), String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let web = self.webs.get(name).ok_or(format!("no host {name}"))?;
        let bind = format!("{}:{APP_PORT}", web.host.ip);
        let args = vec![
            "app".to_string(),
            "--bind".into(),
            bind.clone(),
            "--name".into(),
            name.to_string(),
            "--max-secs".into(),
            self.lab.proc_timeout.to_string(),
        ];
        let proc = self.lab.spawn(
            &web.host,
            &format!("{name}-app"),
            &me.to_string_lossy(),
            &args,
        )?;
        let host = web.host.clone();
        let lab = &self.lab;
        wait_for(Duration::from_secs(10), "the app to listen", || {
            lab.exec(&host, "ss", &["-Hltn", &format!("src = {bind}")])
                .ok()
                .filter(|s| !s.trim().is_empty())
        })?;
        if let Some(w) = self.webs.get_mut(name) {
            w.app = Some(proc);
        }
        Ok(())
    }

    /// Starts the agent on web host `name` with a fresh node name (`name`, then `name-2`, …),
    /// joining the lb host. Returns the node name.
    pub fn start_agent(&mut self, name: &str, kind: WebAgent) -> Result<String, String> {
        self.seq += 1;
        let seed = self.seed();
        let dir = self.lab.dir().to_path_buf();
        let encrypt = self.encrypt.clone();
        let web = self.webs.get_mut(name).ok_or(format!("no host {name}"))?;
        let node = match &web.node {
            None => name.to_string(),
            Some(_) => format!("{name}-{}", self.seq),
        };
        let bind = format!("{}:{GOSSIP_PORT}", web.host.ip);
        let (program, args) = match kind {
            WebAgent::Serf => {
                let mut a = vec![
                    "agent".to_string(),
                    format!("-node={node}"),
                    format!("-bind={bind}"),
                    "-rpc-addr=127.0.0.1:7373".into(),
                    format!("-join={seed}"),
                    "-tag".into(),
                    "role=web".into(),
                    "-tag".into(),
                    format!("port={APP_PORT}"),
                    "-log-level=warn".into(),
                ];
                if let Some(k) = &encrypt {
                    a.push(format!("-encrypt={k}"));
                }
                ("serf".to_string(), a)
            }
            WebAgent::Haserf => {
                let mut a = vec![
                    "agent".to_string(),
                    "--node".into(),
                    node.clone(),
                    "--bind".into(),
                    bind,
                    "--join".into(),
                    seed,
                    "--tag".into(),
                    "role=web".into(),
                    "--tag".into(),
                    format!("port={APP_PORT}"),
                    "--status-socket".into(),
                    dir.join(format!("{name}-haserf.sock"))
                        .display()
                        .to_string(),
                ];
                if let Some(k) = &encrypt {
                    a.push("--encrypt".into());
                    a.push(k.clone());
                }
                (haserf_bin().display().to_string(), a)
            }
        };
        let proc = self
            .lab
            .spawn(&web.host, &format!("{node}-agent"), &program, &args)?;
        web.agent = Some(proc);
        web.node = Some(node.clone());
        web.kind = kind;
        Ok(node)
    }

    /// Graceful leave of the agent on `name` (`serf leave` / `haserf leave`, bounded), then the
    /// app and agent are stopped, as an orchestrator would after the leave returns.
    pub fn leave(&mut self, name: &str) -> Result<(), String> {
        let dir = self.lab.dir().to_path_buf();
        let web = self.webs.get_mut(name).ok_or(format!("no host {name}"))?;
        let res = match web.kind {
            WebAgent::Serf => self
                .lab
                .exec(&web.host, "serf", &["leave", "-rpc-addr=127.0.0.1:7373"])
                .map(|_| ()),
            WebAgent::Haserf => {
                let sock = dir.join(format!("{name}-haserf.sock"));
                super::topology::run(
                    &haserf_bin().display().to_string(),
                    &["leave", "--status-socket", &sock.display().to_string()],
                )
                .map(|_| ())
            }
        };
        if let Some(mut a) = web.agent.take() {
            a.wait_exit(Duration::from_secs(5));
            a.kill();
        }
        if let Some(mut a) = web.app.take() {
            a.kill();
        }
        res
    }

    /// `kill -9` of the app and the agent on `name`, at once.
    pub fn crash(&mut self, name: &str) -> Result<(), String> {
        let web = self.webs.get_mut(name).ok_or(format!("no host {name}"))?;
        let groups: Vec<u32> = [&web.app, &web.agent]
            .iter()
            .filter_map(|p| p.as_ref().map(|p| p.pgid))
            .collect();
        for g in &groups {
            super::topology::kill_group(*g, "KILL");
        }
        web.app.take();
        web.agent.take();
        Ok(())
    }

    /// Whether the app of `name` is in rotation in HAProxy.
    pub fn in_rotation(&self, name: &str) -> bool {
        let Some(web) = self.webs.get(name) else {
            return false;
        };
        haproxy::addr_in_rotation(&self.admin_socket(), "web", &web.app_addr()).unwrap_or(false)
    }

    /// The haserf agent's "member change → runtime command" histogram for backend `web`:
    /// (bucket upper bound in seconds, cumulative count) pairs; `None` on the other sides or
    /// when the agent does not answer.
    pub fn change_to_command_buckets(&self) -> Option<Vec<(f64, u64)>> {
        if !matches!(self.side, Side::Haserf | Side::HaserfGossip) {
            return None;
        }
        let out = std::process::Command::new(haserf_bin())
            .args(["metrics", "--status-socket"])
            .arg(self.status_socket())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut buckets = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("haserf_member_change_to_command_seconds_bucket{")
            else {
                continue;
            };
            let (labels, value) = rest.split_once("} ")?;
            let le = labels
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))?
                .trim_end_matches('"');
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            buckets.push((le, value.trim().parse::<f64>().ok()? as u64));
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(buckets)
    }

    /// Runtime-API batches the haserf agent applied so far (`haproxy.applies` of
    /// `haserf status`); `None` on the other sides.
    pub fn applies(&self) -> Option<u64> {
        if !matches!(self.side, Side::Haserf | Side::HaserfGossip) {
            return None;
        }
        let out = std::process::Command::new(haserf_bin())
            .args(["status", "--format", "json", "--status-socket"])
            .arg(self.status_socket())
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["haproxy"]["applies"].as_u64()
    }

    /// The web host for `name`.
    pub fn web(&self, name: &str) -> Option<&Web> {
        self.webs.get(name)
    }
}
