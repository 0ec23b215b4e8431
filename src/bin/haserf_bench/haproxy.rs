//! HAProxy on the lb host, the same settings for both sides: master-worker mode, an admin
//! socket, HTTP checks, retries and redispatch. Only the server declarations differ: the
//! baseline renders one `server` line per alive member; haserf declares `server-template`
//! slots once and fills them through the runtime API.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Backend port of the web apps.
pub const APP_PORT: u16 = 8080;
/// HAProxy frontend port on the lb host.
pub const FRONTEND_PORT: u16 = 80;

/// Everything in haproxy.cfg before the backend's servers.
pub fn config_head(dir: &Path, lb_ip: std::net::Ipv4Addr) -> String {
    format!(
        "global
    stats socket {admin} mode 600 level admin expose-fd listeners
    stats timeout 30s
    maxconn 4096
    log stderr format short local0 warning

defaults
    mode http
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout check 1s
    retries 3
    option redispatch 1
    option httpchk GET /health
    default-server check inter 1s fall 2 rise 2

frontend fe
    bind {lb_ip}:{FRONTEND_PORT}
    default_backend web

backend web
    balance roundrobin
",
        admin = admin_socket(dir).display()
    )
}

/// The haserf side's servers: `slots` empty slots the agent fills.
pub fn slots_section(slots: u32) -> String {
    format!("    server-template web 1-{slots} 127.0.0.1:9 disabled\n")
}

/// The admin (runtime API) socket path in `dir`.
pub fn admin_socket(dir: &Path) -> PathBuf {
    dir.join("haproxy.sock")
}

/// The master CLI socket path in `dir`.
pub fn master_socket(dir: &Path) -> PathBuf {
    dir.join("master.sock")
}

/// The pid file (master's pid) in `dir`.
pub fn pid_file(dir: &Path) -> PathBuf {
    dir.join("haproxy.pid")
}

/// The arguments that start HAProxy in master-worker mode with config `cfg`.
pub fn args(dir: &Path, cfg: &Path) -> Vec<String> {
    vec![
        "-W".into(),
        "-S".into(),
        master_socket(dir).display().to_string(),
        "-f".into(),
        cfg.display().to_string(),
        "-p".into(),
        pid_file(dir).display().to_string(),
    ]
}

/// Sends one runtime API command, returns the whole answer.
pub fn command(socket: &Path, line: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    // The master CLI answers only once our side is closed.
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// One server row of `show stat`.
#[derive(Clone, Debug)]
pub struct ServerRow {
    /// `IP:PORT`.
    pub addr: String,
    /// Status column (`UP`, `DOWN`, `MAINT`, `no check`, …).
    pub status: String,
}

impl ServerRow {
    /// Whether HAProxy would send new requests to it.
    pub fn in_rotation(&self) -> bool {
        let s = self.status.as_str();
        !(s.starts_with("DOWN")
            || s.starts_with("MAINT")
            || s.starts_with("DRAIN")
            || s.starts_with("NOLB"))
    }
}

/// The server rows of backend `backend` from `show stat`.
pub fn servers(socket: &Path, backend: &str) -> Result<Vec<ServerRow>, String> {
    let csv = command(socket, "show stat")?;
    let mut lines = csv.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| format!("show stat: no header in {csv:?}"))?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |n: &str| cols.iter().position(|c| *c == n);
    let (Some(px), Some(sv), Some(st), Some(ad)) =
        (col("pxname"), col("svname"), col("status"), col("addr"))
    else {
        return Err("show stat: missing columns".into());
    };
    Ok(lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() <= px.max(sv).max(st).max(ad) || f[px] != backend {
                return None;
            }
            if f[sv] == "BACKEND" || f[sv] == "FRONTEND" {
                return None;
            }
            Some(ServerRow {
                addr: f[ad].to_string(),
                status: f[st].to_string(),
            })
        })
        .collect())
}

/// Whether `addr` (`IP:PORT`) is in rotation in `backend`.
pub fn addr_in_rotation(socket: &Path, backend: &str, addr: &str) -> Result<bool, String> {
    Ok(servers(socket, backend)?
        .iter()
        .any(|r| r.addr == addr && r.in_rotation()))
}

/// The current worker's pid (`show info`).
pub fn worker_pid(socket: &Path) -> Option<u32> {
    let info = command(socket, "show info").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .and_then(|p| p.trim().parse().ok())
}

/// How many times HAProxy's master has reloaded (`show proc` on the master CLI).
pub fn master_reloads(dir: &Path) -> Option<u32> {
    let out = command(&master_socket(dir), "show proc").ok()?;
    out.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let _pid = f.next()?;
        (f.next()? == "master").then_some(())?;
        f.next()?.parse().ok()
    })
}

/// The master's pid from the pid file.
pub fn master_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file(dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// HAProxy processes in process group `pgid` (master, current and old workers) and the sum of
/// their resident memory in KiB.
pub fn group_memory(pgid: u32) -> (usize, u64) {
    let mut count = 0;
    let mut kib = 0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …
        let Some((comm_part, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !comm_part.ends_with("(haproxy") {
            continue;
        }
        let pgrp = rest
            .split_whitespace()
            .nth(2)
            .and_then(|p| p.parse::<u32>().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        count += 1;
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            kib += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (count, kib)
}
