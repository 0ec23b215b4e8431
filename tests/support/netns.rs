//! Hosts in network namespaces on a private bridge, for partition and link-failure tests.
//!
//! A [`Lab`] is a dedicated "switch" namespace holding bridge `br0`; each [`NsHost`] is a
//! namespace with `lo` and `eth0` (a veth whose other end `pN` sits on the bridge) and the
//! address `198.18.0.N/24` (RFC 2544 benchmarking range; it exists only inside the lab's
//! namespaces, never in the root namespace). Namespace names carry the test process's pid, so
//! parallel runs never clash, and a new lab deletes leftovers of dead test processes.
//! Cutting a host's link sets its switch-side port down (a cable pull: the host keeps its
//! address and sockets, but nothing gets through).
//!
//! Processes run inside a host through `ip netns exec` (see [`Launch::netns`],
//! `HaproxyConfig::in_netns`, `SerfOptions::netns`). Unix sockets are not network-namespaced,
//! so the test process can still talk to HAProxy's runtime socket or haserf's status socket.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::haproxy::{Haproxy, HaproxyConfig};
use super::http::{HttpResponse, LoopLimits, LoopStats};
use super::process::{require_binary, short_command, Launch, Proc};

static NEXT_LAB: AtomicU32 = AtomicU32::new(1);
const PREFIX: &str = "haserf-";

#[track_caller]
fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (apt-get install iproute2): {e}"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes `haserf-PID-…` namespaces whose test process is gone.
fn gc_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !pid_alive(pid) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

/// A private bridge in its own namespace; hosts are added with [`Lab::add_host`].
pub struct Lab {
    prefix: String,
    switch: String,
    next_host: AtomicU32,
}

impl Lab {
    /// Creates the switch namespace and its bridge. Panics with a clear message when network
    /// namespaces cannot be created (not root, no CAP_SYS_ADMIN).
    #[track_caller]
    pub fn new() -> Lab {
        require_binary("ip");
        gc_stale_namespaces();
        let prefix = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch]);
        let lab = Lab {
            prefix,
            switch,
            next_host: AtomicU32::new(1),
        };
        ip(&["-n", &lab.switch, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &lab.switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        ip(&["-n", &lab.switch, "link", "set", "br0", "up"]);
        lab
    }

    /// The switch namespace's name.
    pub fn switch_netns(&self) -> &str {
        &self.switch
    }

    /// Adds a host `label` (letters/digits) with the next address `198.18.0.N/24`.
    #[track_caller]
    pub fn add_host(&self, label: &str) -> NsHost {
        let n = self.next_host.fetch_add(1, Ordering::SeqCst);
        assert!(n < 255, "lab is full");
        let name = format!("{}-{label}", self.prefix);
        let port = format!("p{n}");
        let addr = Ipv4Addr::new(198, 18, 0, n as u8);
        ip(&["netns", "add", &name]);
        let host = NsHost {
            name: name.clone(),
            label: label.to_string(),
            switch: self.switch.clone(),
            port: port.clone(),
            addr,
        };
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &name,
        ]);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.switch, "link", "set", &port, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        host
    }
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch])
            .status();
    }
}

/// A host (network namespace) on a [`Lab`] bridge; its namespace is deleted on drop.
pub struct NsHost {
    name: String,
    label: String,
    switch: String,
    port: String,
    addr: Ipv4Addr,
}

impl NsHost {
    /// The namespace name (for `ip netns exec`, [`Launch::in_netns`], …).
    pub fn netns(&self) -> &str {
        &self.name
    }

    /// The label given at creation.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its address on the lab bridge.
    pub fn ip(&self) -> Ipv4Addr {
        self.addr
    }

    /// Runs `program args…` inside the host (bounded by `timeout 30`) and returns its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        short_command(Some(&self.name), 30, program, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// Runs a `bash -c` script inside the host.
    pub fn sh(&self, script: &str) -> Output {
        self.exec("bash", &["-c", script])
    }

    /// Starts a long-running process inside the host (see [`Proc`]).
    #[track_caller]
    pub fn spawn(&self, launch: Launch) -> Proc {
        Proc::spawn(launch.in_netns(Some(&self.name)))
    }

    /// True if a TCP connection from this host to `ip:port` succeeds within 2 s.
    pub fn tcp_connects(&self, ip: Ipv4Addr, port: u16) -> bool {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
        short_command(Some(&self.name), 2, "bash", &["-c", &script])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `GET url` with curl from inside this host (5 s limit).
    pub fn http_get(&self, url: &str) -> std::io::Result<HttpResponse> {
        require_binary("curl");
        let out = self.exec(
            "curl",
            &["-s", "--max-time", "5", "-w", "\n%{http_code}", url],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        match code.trim().parse::<u16>() {
            Ok(status) if status != 0 && out.status.success() => Ok(HttpResponse {
                status,
                headers: Vec::new(),
                body: body.to_string(),
            }),
            _ => Err(std::io::Error::other(format!(
                "curl {url} from {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ))),
        }
    }

    /// Starts a steady request loop from inside this host (curl in a bash loop, one request per
    /// `limits.interval`, bounded by `limits.max_requests` and `limits.max_duration`; no
    /// keep-alive). Read the counts with [`NsRequestLoop::snapshot`] / [`NsRequestLoop::stop`].
    #[track_caller]
    pub fn request_loop(
        &self,
        url: &str,
        limits: LoopLimits,
        log_dir: &std::path::Path,
    ) -> NsRequestLoop {
        require_binary("curl");
        let log = log_dir.join(format!("loop-{}-{}.log", self.label, std::process::id()));
        let _ = std::fs::remove_file(&log);
        let script = format!(
            "end=$((SECONDS+{secs})); n=0; \
             while [ $n -lt {max} ] && [ $SECONDS -lt $end ]; do \
               curl -s -m 2 -w ' %{{http_code}}\\n' '{url}'; n=$((n+1)); sleep {interval}; \
             done",
            secs = limits.max_duration.as_secs().max(1),
            max = limits.max_requests,
            interval = limits.interval.as_secs_f64(),
        );
        let proc = self.spawn(Launch::new("bash", &["-c", &script], &log));
        NsRequestLoop { proc, log }
    }

    /// Starts an HTTP backend inside this host on `port`, answering every request with
    /// `{"hello":"world","host":NAME,"ip":ADDR}` (a minimal HAProxy, since a thread of the test
    /// process cannot live in another namespace).
    #[track_caller]
    pub fn http_backend(&self, name: &str, port: u16) -> Haproxy {
        let body = format!(
            "frontend backend_{name}
    bind {ip}:{port}
    bind 127.0.0.1:{port}
    http-request return status 200 content-type application/json string '{{\"hello\":\"world\",\"host\":\"{name}\",\"ip\":\"{ip}\"}}'
",
            ip = self.addr
        );
        Haproxy::start(HaproxyConfig::new(&body).in_netns(&self.name))
    }

    /// Cuts the host's link (its bridge port goes down): nothing gets in or out.
    #[track_caller]
    pub fn cut_link(&self) {
        ip(&["-n", &self.switch, "link", "set", &self.port, "down"]);
    }

    /// Restores the link cut by [`NsHost::cut_link`].
    #[track_caller]
    pub fn restore_link(&self) {
        ip(&["-n", &self.switch, "link", "set", &self.port, "up"]);
    }
}

impl Drop for NsHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A request loop running inside a namespace host ([`NsHost::request_loop`]).
pub struct NsRequestLoop {
    proc: Proc,
    log: std::path::PathBuf,
}

impl NsRequestLoop {
    /// Counts so far: one output line per request, `BODY CODE` (`000` = no answer).
    pub fn snapshot(&self) -> LoopStats {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut s = LoopStats::default();
        for line in text.lines() {
            let (body, code) = line.rsplit_once(' ').unwrap_or(("", line));
            if code == "200" {
                s.ok += 1;
                let host = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("host")?.as_str().map(str::to_string))
                    .unwrap_or_default();
                *s.by_host.entry(host).or_default() += 1;
            } else {
                s.failed += 1;
                if s.failures.len() < 20 {
                    s.failures
                        .push(format!("request {}: status {code} {body:.120}", s.total()));
                }
            }
        }
        s
    }

    /// True once the loop has ended by itself.
    pub fn is_finished(&mut self) -> bool {
        !self.proc.is_running()
    }

    /// Stops the loop and returns the final counts.
    pub fn stop(mut self) -> LoopStats {
        self.proc.kill();
        self.snapshot()
    }
}
