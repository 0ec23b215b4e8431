//! A real HAProxy started from a config template in a temp dir, with an admin runtime socket
//! (`admin.sock`) and a second, non-admin one (`user.sock`, `level user`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::addr::{alloc_ip, free_port_on};
use super::process::{require_binary, Launch, Proc};
use super::wait::{try_wait_until, wait_until};

/// Sends one runtime-API line (commands may be `;`-separated) on a fresh connection to the
/// unix socket at `socket` and returns the whole reply (read to EOF).
pub fn runtime_command(socket: &Path, line: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(line.trim_end_matches('\n').as_bytes())?;
    s.write_all(b"\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The configuration HAProxy is started with. The harness writes the `global` section
/// (runtime sockets, logging to stdout) and, unless overridden, a `defaults` section; `body`
/// holds frontends, backends and so on.
///
/// Placeholders replaced in `body`, `global_extra` and `defaults`: `@DIR@` (the temp dir),
/// `@ADMIN_SOCK@`, `@USER_SOCK@`, plus every `@KEY@` from `vars`.
#[derive(Clone, Debug)]
pub struct HaproxyConfig {
    /// Frontends, backends, listens… (placeholders allowed).
    pub body: String,
    /// Extra lines for the `global` section (e.g. `lua-load …`, `setenv …`).
    pub global_extra: String,
    /// The `defaults` section; `None` = the harness default (mode http, short timeouts).
    pub defaults: Option<String>,
    /// Extra placeholders: `@KEY@` → value.
    pub vars: Vec<(String, String)>,
    /// Run HAProxy inside this network namespace.
    pub netns: Option<String>,
    /// Master-worker mode (`-W`): needed for [`Haproxy::reload`].
    pub master_worker: bool,
}

/// The harness's default `defaults` section.
pub const DEFAULT_DEFAULTS: &str = "defaults
    mode http
    log global
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s
";

/// Written into the `global` section before `global_extra` when that loads Lua: the
/// version-guarded `tune.lua.bool-sample-conversion` of haproxy/haproxy.cfg.
pub const LUA_TUNABLES: &str = "    .if version_atleast(3.1)
        tune.lua.bool-sample-conversion normal
    .endif
";

impl HaproxyConfig {
    /// A config with `body` as the proxies part.
    pub fn new(body: &str) -> HaproxyConfig {
        HaproxyConfig {
            body: body.to_string(),
            global_extra: String::new(),
            defaults: None,
            vars: Vec::new(),
            netns: None,
            master_worker: false,
        }
    }

    /// The usual slot setup: a frontend `fe` on `frontend` sending everything to backend
    /// `backend`, which declares `slots` empty slots the recommended way
    /// (`server-template <backend> 1-N 127.0.0.1:9 check disabled`, HTTP check on `/healthz`,
    /// fast check timings), and a stats page (`/stats`) on `stats`.
    pub fn slots(
        backend: &str,
        slots: u32,
        frontend: SocketAddr,
        stats: SocketAddr,
    ) -> HaproxyConfig {
        HaproxyConfig::new(&format!(
            "frontend fe
    bind {frontend}
    default_backend {backend}

backend {backend}
    balance roundrobin
    option httpchk GET /healthz
    retries 2
    option redispatch
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template {backend} 1-{slots} 127.0.0.1:9 check disabled

listen stats
    bind {stats}
    stats enable
    stats uri /stats
    stats refresh 5s
"
        ))
    }

    /// A frontend on `frontend` with the Lua status page (`lua.haserf-status` on `/haserf`,
    /// lua/haserf.lua loaded after `global` lines such as `setenv HASERF_STATUS_SOCKET …`)
    /// and everything else to backend `web`: `slots` empty slots on template port 3000.
    pub fn status_page(frontend: SocketAddr, slots: u32, global: &str) -> HaproxyConfig {
        let lua = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/haserf.lua");
        HaproxyConfig::new(&format!(
            "frontend fe
    bind {frontend}
    http-request use-service lua.haserf-status if {{ path /haserf }}
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template web 1-{slots} 127.0.0.1:3000 check disabled
"
        ))
        .global(&format!("{global}\n    lua-load {lua}"))
    }

    /// Adds a `@KEY@` placeholder (builder style).
    pub fn var(mut self, key: &str, value: &str) -> HaproxyConfig {
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds lines to the `global` section (builder style).
    pub fn global(mut self, lines: &str) -> HaproxyConfig {
        self.global_extra.push_str(lines);
        self.global_extra.push('\n');
        self
    }

    /// Runs HAProxy inside network namespace `ns` (builder style).
    pub fn in_netns(mut self, ns: &str) -> HaproxyConfig {
        self.netns = Some(ns.to_string());
        self
    }

    /// Master-worker mode, so that [`Haproxy::reload`] works (builder style).
    pub fn master_worker(mut self) -> HaproxyConfig {
        self.master_worker = true;
        self
    }

    fn render(&self, dir: &Path) -> String {
        // As the shipped configs do (haproxy/haproxy.cfg): HAProxy 3.1+ warns unless this is
        // set before `lua-load`; 2.6 and 3.0 do not know it.
        let lua_tunables = if self.global_extra.contains("lua-load") {
            LUA_TUNABLES
        } else {
            ""
        };
        let text = format!(
            "global
    stats socket @ADMIN_SOCK@ mode 600 level admin
    stats socket @USER_SOCK@ mode 600 level user
    stats timeout 30s
    log stdout format raw local0 info
{lua_tunables}{}
{}
{}
",
            self.global_extra,
            self.defaults.as_deref().unwrap_or(DEFAULT_DEFAULTS),
            self.body
        );
        let mut text = text
            .replace("@DIR@", &dir.display().to_string())
            .replace(
                "@ADMIN_SOCK@",
                &dir.join("admin.sock").display().to_string(),
            )
            .replace("@USER_SOCK@", &dir.join("user.sock").display().to_string());
        for (k, v) in &self.vars {
            text = text.replace(&format!("@{k}@"), v);
        }
        text
    }
}

/// One row of `show stat` (CSV), indexed by header name.
#[derive(Clone, Debug, Default)]
pub struct StatRow {
    /// Field name → value, for every column of the header.
    pub fields: std::collections::BTreeMap<String, String>,
}

impl StatRow {
    /// The value of field `name` (empty string when absent).
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
    /// `pxname`.
    pub fn proxy(&self) -> &str {
        self.get("pxname")
    }
    /// `svname` (slot name, or `FRONTEND`/`BACKEND`).
    pub fn server(&self) -> &str {
        self.get("svname")
    }
    /// `status` (e.g. `MAINT`, `UP`, `DRAIN`, `DOWN 1/2`).
    pub fn status(&self) -> &str {
        self.get("status")
    }
    /// `addr` (`ip:port`).
    pub fn addr(&self) -> &str {
        self.get("addr")
    }
}

/// Parses `show stat` CSV output (header line starting with `# `). Test-side only; the
/// product's own parser lives in src/haproxy.
pub fn parse_show_stat(csv: &str) -> Vec<StatRow> {
    let mut lines = csv.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let names: Vec<&str> = header.split(',').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| StatRow {
            fields: names
                .iter()
                .zip(l.split(','))
                .filter(|(n, _)| !n.is_empty())
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        })
        .collect()
}

/// A running HAProxy; killed on drop.
pub struct Haproxy {
    dir: tempfile::TempDir,
    config: HaproxyConfig,
    cfg_path: PathBuf,
    proc: Option<Proc>,
}

impl Haproxy {
    /// Writes the config into a fresh temp dir, starts `haproxy -db -f`, and waits until the
    /// admin socket answers `show info`. Panics with HAProxy's output if it does not.
    #[track_caller]
    pub fn start(config: HaproxyConfig) -> Haproxy {
        require_binary("haproxy");
        let dir = tempfile::Builder::new()
            .prefix("haserf-haproxy-")
            .tempdir()
            .expect("temp dir");
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, config.render(dir.path())).expect("write haproxy.cfg");
        let mut h = Haproxy {
            dir,
            config,
            cfg_path,
            proc: None,
        };
        h.launch();
        h
    }

    /// The usual slot setup ([`HaproxyConfig::slots`]) on freshly allocated addresses.
    #[track_caller]
    pub fn start_slots(backend: &str, slots: u32) -> Haproxy {
        let ip = alloc_ip();
        let fe = SocketAddr::from((ip, free_port_on(ip)));
        let st = SocketAddr::from((ip, free_port_on(ip)));
        Haproxy::start(HaproxyConfig::slots(backend, slots, fe, st))
    }

    #[track_caller]
    fn launch(&mut self) {
        let old_pid = self.try_pid();
        let cfg = self.cfg_path.display().to_string();
        let master = format!("{},level,admin", self.master_socket().display());
        let mut args = vec!["-db", "-f", cfg.as_str()];
        if self.config.master_worker {
            args.splice(0..0, ["-W", "-S", master.as_str()]);
        }
        let launch = Launch::new("haproxy", &args, self.dir.path().join("haproxy.log"))
            .in_netns(self.config.netns.as_deref());
        let mut proc = Proc::spawn(launch);
        let admin = self.admin_socket();
        let r = try_wait_until(
            Duration::from_secs(10),
            "HAProxy to answer `show info`",
            || {
                if !proc.is_running() {
                    return Ok(None);
                }
                match runtime_command(&admin, "show info") {
                    Ok(reply) => match parse_pid(&reply) {
                        Some(pid) if Some(pid) != old_pid => Ok(Some(pid)),
                        _ => Err(format!("reply: {reply:.200}")),
                    },
                    Err(e) => Err(e.to_string()),
                }
            },
        );
        match r {
            Ok(Some(_)) => self.proc = Some(proc),
            Ok(None) => panic!(
                "HAProxy exited at start-up; config {}:\n{}\n--- output:\n{}",
                self.cfg_path.display(),
                std::fs::read_to_string(&self.cfg_path).unwrap_or_default(),
                proc.log()
            ),
            Err(e) => panic!("{e}\n--- HAProxy output:\n{}", proc.log()),
        }
    }

    /// The temp dir holding the config, sockets and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The rendered haproxy.cfg.
    pub fn config_path(&self) -> &Path {
        &self.cfg_path
    }

    /// The admin-level runtime socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The master CLI socket (`-S`, master-worker mode only).
    pub fn master_socket(&self) -> PathBuf {
        self.dir.path().join("master.sock")
    }

    /// Reloads HAProxy through the master CLI's `reload` command (master-worker mode only)
    /// and waits until the admin socket is answered by the new worker.
    #[track_caller]
    pub fn reload_via_master_cli(&mut self) {
        assert!(
            self.config.master_worker,
            "Haproxy::reload_via_master_cli needs HaproxyConfig::master_worker()"
        );
        let old = self.pid();
        let master = self.master_socket();
        let mut last: Option<std::time::Instant> = None;
        wait_until(
            Duration::from_secs(20),
            "a new HAProxy worker after the master CLI `reload`",
            || {
                if last.is_none_or(|t| t.elapsed() > Duration::from_secs(4)) {
                    // the master answers `reload` and may close before a prompt: any reply
                    // (or none) is fine, the new pid decides
                    let _ = runtime_command(&master, "reload");
                    last = Some(std::time::Instant::now());
                }
                match self.try_pid() {
                    Some(pid) if pid != old => Ok(pid),
                    other => Err(format!("pid {other:?}")),
                }
            },
        );
    }

    /// The `level user` runtime socket (for permission-error tests).
    pub fn user_socket(&self) -> PathBuf {
        self.dir.path().join("user.sock")
    }

    /// The address `bind` of the first frontend/listen, i.e. where to send HTTP requests
    /// (for configs made by [`HaproxyConfig::slots`]: the frontend).
    pub fn frontend_addr(&self) -> SocketAddr {
        self.bind_addrs()[0]
    }

    /// The stats page address of a [`HaproxyConfig::slots`] config (its second `bind`).
    pub fn stats_addr(&self) -> SocketAddr {
        self.bind_addrs()[1]
    }

    /// Every `bind IP:PORT` in the body, in order.
    pub fn bind_addrs(&self) -> Vec<SocketAddr> {
        let text = std::fs::read_to_string(&self.cfg_path).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("bind "))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// Sends `line` on the admin socket and returns the reply; panics if the socket fails.
    #[track_caller]
    pub fn cmd(&self, line: &str) -> String {
        runtime_command(&self.admin_socket(), line)
            .unwrap_or_else(|e| panic!("runtime command `{line}` failed: {e}"))
    }

    /// Sends `line` on the `level user` socket and returns the reply.
    #[track_caller]
    pub fn cmd_user(&self, line: &str) -> String {
        runtime_command(&self.user_socket(), line)
            .unwrap_or_else(|e| panic!("runtime command `{line}` (user socket) failed: {e}"))
    }

    /// `show stat`, parsed into rows.
    #[track_caller]
    pub fn show_stat(&self) -> Vec<StatRow> {
        parse_show_stat(&self.cmd("show stat"))
    }

    /// The server rows (slots) of `backend` from `show stat`.
    #[track_caller]
    pub fn slots(&self, backend: &str) -> Vec<StatRow> {
        self.show_stat()
            .into_iter()
            .filter(|r| r.proxy() == backend && r.get("type") == "2")
            .collect()
    }

    fn try_pid(&self) -> Option<u32> {
        runtime_command(&self.admin_socket(), "show info")
            .ok()
            .and_then(|r| parse_pid(&r))
    }

    /// HAProxy's pid as reported by `show info`.
    #[track_caller]
    pub fn pid(&self) -> u32 {
        self.try_pid().expect("HAProxy does not answer `show info`")
    }

    /// Stops HAProxy (SIGKILL to its process group) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// True while the HAProxy process is running.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }

    /// Stops HAProxy and starts it again with the same config: a new process (new pid) with
    /// every runtime change gone. Waits until the new one answers `show info`.
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Reloads HAProxy (master-worker mode only, see [`HaproxyConfig::master_worker`]): the
    /// master starts a new worker from the same config (a new pid in `show info`, runtime
    /// changes gone) and the old one finishes its connections. Waits until the admin socket
    /// is answered by the new worker.
    #[track_caller]
    pub fn reload(&mut self) {
        assert!(
            self.config.master_worker,
            "Haproxy::reload needs HaproxyConfig::master_worker()"
        );
        let old = self.pid();
        // Under heavy load the master has been seen to miss a USR2 sent right after start;
        // another reload request is harmless (we only need some new worker), so re-send it
        // every few seconds until one appears.
        let mut last_signal: Option<std::time::Instant> = None;
        let log = || self.log();
        wait_until(
            Duration::from_secs(20),
            "a new HAProxy worker after reload",
            || {
                if last_signal.is_none_or(|t| t.elapsed() > Duration::from_secs(4)) {
                    self.proc
                        .as_ref()
                        .expect("HAProxy is not running")
                        .signal("USR2");
                    last_signal = Some(std::time::Instant::now());
                }
                match self.try_pid() {
                    Some(pid) if pid != old => Ok(pid),
                    other => Err(format!("pid {other:?}; log tail: {:.300}", log())),
                }
            },
        );
    }

    /// HAProxy's output (startup messages and the log, `log stdout`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// Waits until slot `backend/server` shows a `status` starting with `prefix`
    /// (e.g. `"UP"`, `"MAINT"`, `"DRAIN"`); returns the row.
    #[track_caller]
    pub fn wait_slot_status(
        &self,
        backend: &str,
        server: &str,
        prefix: &str,
        timeout: Duration,
    ) -> StatRow {
        wait_until(
            timeout,
            &format!("{backend}/{server} status {prefix}"),
            || {
                let rows = self.slots(backend);
                match rows.iter().find(|r| r.server() == server) {
                    Some(r) if r.status().starts_with(prefix) => Ok(r.clone()),
                    Some(r) => Err(format!("status {:?} addr {:?}", r.status(), r.addr())),
                    None => Err(format!("no slot {server}")),
                }
            },
        )
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_pid(show_info: &str) -> Option<u32> {
    show_info
        .lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .and_then(|p| p.trim().parse().ok())
}
