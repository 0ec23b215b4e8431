//! Companion overhead, in one run against one real HAProxy:
//!
//! 1. **Throughput** (`BENCH_SCENARIO=throughput`): requests per second of frontends that
//!    share one backend server (an `http-request return` listener), as ratios to the plain
//!    frontend: X-Served-By from the agent's `served-by` map, from the Lua fetch, and the
//!    shipped SPOE filter (haproxy/spoe.conf) idle, with one message per request (a client
//!    pinned to a node) and with two (backend facts at request time, server facts at
//!    response time). Load from `wrk` (Debian package `wrk`); rounds interleave the
//!    variants so drift hits all alike.
//! 2. **Agent restart** (`BENCH_SCENARIO=restart`): a paced load (every request pinned, so
//!    every request is one SPOE message) while the SPOE agent is killed and started again,
//!    with the `haserf-spoe` backend exactly as haproxy/haproxy.cfg ships it. Per phase:
//!    request latency p50/p99/max, and the p99 added over the baseline from 1 s after each
//!    event on (issue 13: at most 5 ms).
//!
//! For the throughput runs the SPOE agent and the status socket run in this process (the
//! agent's own [`haserf::spoe::serve_listener`], its cached index, a fixed view); the
//! restart scenario runs a real `haserf agent` process and kills it with SIGKILL.
//!
//! Run: `cargo bench --bench companion` (env: BENCH_SCENARIO throughput|restart|all,
//! default all; BENCH_SECS per throughput run, default 3; BENCH_ROUNDS, default 5;
//! BENCH_CONNS, default 32; BENCH_THREADS for wrk, default 2; BENCH_RATE for the restart
//! load, default 200 requests/s).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haserf::control::model::{MemberStatus, MemberView, Query, Request, SlotState, SlotView};
use haserf::control::page;
use haserf::control::server::{error_value, Handler, SocketOptions, StatusServer};
use haserf::spoe::{self, CachedView, ClusterView, SpoeConfig, SpoeMetrics, StaticView};
use serde_json::Value;
use support::*;

struct ViewHandler(Arc<StaticView>);

impl Handler for ViewHandler {
    fn handle_query(&self, q: Query) -> Value {
        match q.request {
            Request::Members => page::members_reply(&self.0.members(), &q.options),
            Request::Slots => page::slots_reply(&self.0.slots(), &q.options),
            other => self.handle(other),
        }
    }
    fn handle(&self, _: Request) -> Value {
        error_value("not in the benchmark")
    }
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs wrk against `url` with extra `headers`; returns requests/s, requests and the
/// non-2xx/socket error count.
fn wrk(url: &str, headers: &[&str], secs: u64, conns: u64, threads: u64) -> (f64, u64, u64) {
    let mut args = vec![
        (secs + 30).to_string(),
        "wrk".into(),
        "-t".into(),
        threads.to_string(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{secs}s"),
    ];
    for h in headers {
        args.push("-H".into());
        args.push(h.to_string());
    }
    args.push(url.into());
    let out = Command::new("timeout")
        .args(&args)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.to_string())
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let errors = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("Non-2xx or 3xx responses:") {
                rest.trim().parse::<u64>().ok()
            } else {
                l.strip_prefix("Socket errors:").map(|rest| {
                    rest.split(',')
                        .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                        .sum()
                })
            }
        })
        .sum();
    (rps, requests, errors)
}

/// CPU time (user + system) a process has used so far, in microseconds.
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name (which is in parentheses and may hold spaces)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks * 1_000_000 / 100
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The SPOE agent in this process (the throughput runs).
struct SpoeAgent {
    addr: SocketAddr,
    metrics: Arc<SpoeMetrics>,
}

impl SpoeAgent {
    fn start(rt: &tokio::runtime::Runtime, view: Arc<dyn ClusterView>) -> SpoeAgent {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((alloc_ip(), 0)))
            .expect("SPOE port");
        let addr = listener.local_addr().expect("addr");
        let cfg = SpoeConfig::new(addr);
        let metrics = cfg.metrics.clone();
        rt.spawn(spoe::serve_listener(
            listener,
            cfg,
            view,
            std::future::pending::<()>(),
        ));
        SpoeAgent { addr, metrics }
    }
}

/// A real `haserf agent` process (member mode, node `origin`) serving SPOP on `addr`.
struct RealAgent {
    addr: SocketAddr,
    dir: std::path::PathBuf,
    proc: Option<Proc>,
    starts: u32,
}

impl RealAgent {
    fn start(addr: SocketAddr, dir: &Path) -> RealAgent {
        let mut a = RealAgent {
            addr,
            dir: dir.to_owned(),
            proc: None,
            starts: 0,
        };
        a.restart();
        a
    }

    /// SIGKILL: the process dies with every connection.
    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the process again (same node, same addresses).
    fn restart(&mut self) {
        self.starts += 1;
        let std::net::IpAddr::V4(ip) = self.addr.ip() else {
            unreachable!("test addresses are IPv4")
        };
        let gossip = SocketAddr::from((ip, free_port_on(ip)));
        let args = [
            "agent".to_string(),
            "--node".into(),
            "origin".into(),
            "--bind".into(),
            gossip.to_string(),
            "--status-socket".into(),
            self.dir.join("agent.sock").display().to_string(),
            "--spoe-bind".into(),
            self.addr.to_string(),
            "--log-level".into(),
            "warn".into(),
        ];
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.proc = Some(Proc::spawn(Launch::new(
            support::agent::haserf_bin(),
            &argv,
            self.dir.join(format!("agent-{}.log", self.starts)),
        )));
    }
}

/// The `backend haserf-spoe` section of the shipped haproxy/haproxy.cfg, pointed at `addr`.
fn shipped_spoe_backend(root: &Path, addr: SocketAddr) -> String {
    let cfg = std::fs::read_to_string(root.join("haproxy/haproxy.cfg")).expect("haproxy.cfg");
    let start = cfg
        .find("backend haserf-spoe")
        .expect("haproxy.cfg has a haserf-spoe backend");
    let section: Vec<&str> = cfg[start..]
        .lines()
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with(' ') || l.trim().is_empty())
        .map(|(_, l)| l)
        .filter(|l| !l.trim().starts_with('#'))
        .collect();
    let text = section.join("\n");
    let server = text
        .lines()
        .find(|l| l.trim_start().starts_with("server "))
        .expect("a server line");
    let shipped_addr = server.split_whitespace().nth(2).expect("server address");
    text.replace(shipped_addr, &addr.to_string()) + "\n"
}

fn main() {
    require_binary("haproxy");
    let scenario = std::env::var("BENCH_SCENARIO").unwrap_or_else(|_| "all".into());
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("haserf.sock");
    let map = dir.path().join("served-by.map");

    let ip = alloc_ip();
    let origin = SocketAddr::from((ip, free_port_on(ip)));
    let mut tags = BTreeMap::new();
    tags.insert("role".to_string(), "web".to_string());
    tags.insert("zone".to_string(), "a".to_string());
    let view = Arc::new(StaticView {
        members: vec![MemberView {
            name: "origin".into(),
            addr: ip.to_string(),
            port: 7946,
            tags,
            status: MemberStatus::Alive,
            suspect: false,
        }],
        slots: vec![SlotView {
            backend: "web".into(),
            slot: "web1".into(),
            member: Some("origin".into()),
            addr: Some(origin.to_string()),
            state: SlotState::Ready,
            haproxy_status: "UP".into(),
        }],
    });
    // the served-by map as the agent writes it
    let entries: haserf::maps::Entries = [("web/web1".to_string(), "origin".to_string())].into();
    std::fs::write(
        &map,
        haserf::maps::file::render(&haserf::maps::MapKind::ServedBy, &entries),
    )
    .expect("map file");

    let server = rt
        .block_on(StatusServer::bind(&SocketOptions::new(&sock)))
        .expect("status socket");
    let handler: Arc<dyn Handler> = Arc::new(ViewHandler(view.clone()));
    rt.spawn(async move { server.serve(handler).await });
    let cluster: Arc<dyn ClusterView> = Arc::new(CachedView::new(
        StaticView::clone(&view),
        Duration::from_millis(100),
    ));
    let agent = SpoeAgent::start(&rt, cluster);

    let variants: [(&str, &str, &[&str]); 6] = [
        ("plain", "", &[]),
        (
            "map",
            "    http-response set-var-fmt(txn.haserf_slot) %[be_name]/%[srv_name]\n    http-response set-header X-Served-By %[var(txn.haserf_slot),map(@MAP@)]\n",
            &[],
        ),
        (
            "lua",
            "    http-response set-header X-Served-By %[lua.haserf_node]\n",
            &[],
        ),
        (
            "map+spoe idle",
            "    filter spoe engine haserf config @SPOE@\n    http-response set-var-fmt(txn.haserf_slot) %[be_name]/%[srv_name]\n    http-response set-header X-Served-By %[var(txn.haserf_slot),map(@MAP@)]\n",
            &[],
        ),
        (
            "map+spoe 1 msg",
            "    filter spoe engine haserf config @SPOE@\n    http-request deny deny_status 403 if { req.hdr(x-haserf-node) -m found } !{ var(txn.haserf.node_alive) -m bool }\n    http-response set-var-fmt(txn.haserf_slot) %[be_name]/%[srv_name]\n    http-response set-header X-Served-By %[var(txn.haserf_slot),map(@MAP@)]\n",
            &["X-Haserf-Node: origin"],
        ),
        (
            "spoe 2 msgs",
            "    filter spoe engine haserf config @SPOE@\n    http-request send-spoe-group haserf haserf-backend-facts\n    http-response send-spoe-group haserf haserf-server-facts\n    http-response set-header X-Haserf-Node %[var(txn.haserf.server_node)]\n    http-response set-header X-Haserf-Live %[var(txn.haserf.backend_live)]\n",
            &[],
        ),
    ];
    let fe: Vec<SocketAddr> = (0..=variants.len())
        .map(|_| {
            let ip = alloc_ip();
            SocketAddr::from((ip, free_port_on(ip)))
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spoe_conf = root.join("haproxy/spoe.conf");
    let mut body = String::new();
    for (i, (_, rules, _)) in variants.iter().enumerate() {
        body.push_str(&format!(
            "frontend fe{i}\n    bind {}\n{rules}    default_backend web\n\n",
            fe[i]
        ));
    }
    // the restart scenario: every request pinned, the pinned-node rule, the shipped
    // spoe.conf and backend (renamed) in front of a real agent process
    let pinned_fe = fe[variants.len()];
    let real_ip = alloc_ip();
    let real_agent_addr = SocketAddr::from((real_ip, free_port_on(real_ip)));
    let restart_conf = dir.path().join("spoe-restart.conf");
    std::fs::write(
        &restart_conf,
        std::fs::read_to_string(&spoe_conf)
            .expect("spoe.conf")
            .replace("use-backend haserf-spoe", "use-backend haserf-spoe-real")
            .replace(
                "    log global",
                if std::env::var("BENCH_BUCKETS").is_ok() {
                    "    log stdout format iso local0 info"
                } else {
                    "    log global"
                },
            ),
    )
    .expect("spoe-restart.conf");
    body.push_str(&format!(
        "frontend pinned
    bind {pinned_fe}
    filter spoe engine haserf config {restart_conf}
    http-request deny deny_status 403 if {{ req.hdr(x-haserf-node) -m found }} !{{ var(txn.haserf.node_alive) -m bool }}
    http-response set-header X-Haserf-Error %[var(txn.haserf.error)]
    default_backend web

backend web
    http-reuse always
    server web1 {origin}

listen origin
    bind {origin}
    http-request return status 200 content-type text/plain string ok

{}
{}",
        shipped_spoe_backend(root, agent.addr),
        shipped_spoe_backend(root, real_agent_addr)
            .replace("backend haserf-spoe", "backend haserf-spoe-real"),
        restart_conf = restart_conf.display(),
    ));
    let body = body
        .replace("@MAP@", &map.display().to_string())
        .replace("@SPOE@", &spoe_conf.display().to_string());
    let h = Haproxy::start(HaproxyConfig::new(&body).global(&format!(
        "    setenv HASERF_STATUS_SOCKET {}\n    setenv HASERF_REFRESH_MS 1000\n    lua-load {}",
        sock.display(),
        root.join("lua/haserf.lua").display()
    )));

    // Every variant must really do its work before it is measured.
    let check = |i: usize, headers: &[(&str, &str)], want: &[(&str, &str)]| {
        wait_until(
            Duration::from_secs(15),
            &format!("variant {} answering with {want:?}", variants[i].0),
            || {
                let r = request(fe[i], headers).map_err(|e| e.to_string())?;
                for (k, v) in want {
                    if r.1.get(*k).map(String::as_str) != Some(*v) {
                        return Err(format!("{:?}", r));
                    }
                }
                Ok(())
            },
        );
    };
    check(1, &[], &[("x-served-by", "origin")]);
    check(2, &[], &[("x-served-by", "origin")]);
    check(3, &[], &[("x-served-by", "origin")]);
    check(
        4,
        &[("x-haserf-node", "origin")],
        &[("x-served-by", "origin")],
    );
    check(
        5,
        &[],
        &[("x-haserf-node", "origin"), ("x-haserf-live", "1")],
    );
    let r = request(fe[4], &[("x-haserf-node", "nobody")]).expect("request");
    assert_eq!(r.0, 403, "the pinned-node rule refuses an unknown node");

    if std::env::var("BENCH_BUCKETS").is_ok() {
        println!(
            "{}",
            std::fs::read_to_string(h.config_path()).unwrap_or_default()
        );
    }
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "companion bench: HAProxy {} pid {}, {nproc} CPUs, loadavg at start: {}",
        haproxy_version(),
        h.pid(),
        loadavg()
    );
    if scenario == "all" || scenario == "throughput" {
        throughput(&variants, &fe, &agent, h.pid());
    }
    if scenario == "all" || scenario == "restart" {
        let mut real = RealAgent::start(real_agent_addr, dir.path());
        wait_until(
            Duration::from_secs(15),
            "the agent process to answer SPOE",
            || match request(pinned_fe, &[("x-haserf-node", "origin")]) {
                Ok((200, h)) if h.get("x-haserf-error").is_none_or(|e| e.is_empty()) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        restart(pinned_fe, &mut real);
        // what HAProxy logged about the agent meanwhile
        let log = h.log();
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for l in log.lines().filter(|l| l.contains("SPOE: [haserf-agent]")) {
            if let Some(st) = l.split_whitespace().find(|w| w.starts_with("st=")) {
                *by_status.entry(st.to_string()).or_default() += 1;
            }
        }
        println!("HAProxy's SPOE log, failed events by status (st=1 timeout, st=2 no agent): {by_status:?}");
        if std::env::var("BENCH_BUCKETS").is_ok() {
            for l in log.lines().filter(|l| l.contains(" st=1 ")).take(40) {
                println!("  {l}");
            }
        }
        for l in log
            .lines()
            .filter(|l| l.contains("/haserf is ") && !l.starts_with('['))
        {
            println!("HAProxy: {}", l.chars().take(160).collect::<String>());
        }
    }
    drop(h);
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(2)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn throughput(
    variants: &[(&str, &str, &[&str])],
    fe: &[SocketAddr],
    agent: &SpoeAgent,
    haproxy_pid: u32,
) {
    require_binary("wrk");
    let secs = env_num("BENCH_SECS", 3);
    let rounds = env_num("BENCH_ROUNDS", 5);
    let conns = env_num("BENCH_CONNS", 32);
    let threads = env_num("BENCH_THREADS", 2);
    println!(
        "\nthroughput: {rounds} rounds x {secs}s per variant, wrk -t{threads} -c{conns}, loadavg {}",
        loadavg()
    );
    let me = std::process::id();
    let mut rps: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // CPU microseconds per request: HAProxy, and the agent (this process)
    let mut cpu: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    let mut errors: u64 = 0;
    for round in 1..=rounds {
        for (i, (name, _, headers)) in variants.iter().enumerate() {
            let (h0, a0) = (cpu_us(haproxy_pid), cpu_us(me));
            let (r, n, err) = wrk(&format!("http://{}/", fe[i]), headers, secs, conns, threads);
            let (h1, a1) = (cpu_us(haproxy_pid), cpu_us(me));
            errors += err;
            println!("round {round} {name:>14}: {r:>10.0} req/s ({err} errors)");
            rps.entry(name).or_default().push(r);
            let c = cpu.entry(name).or_default();
            *c = (c.0 + h1 - h0, c.1 + a1 - a0, c.2 + n);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let per_req = |name: &str| {
        let (h, a, n) = cpu[name];
        (h as f64 / n.max(1) as f64, a as f64 / n.max(1) as f64)
    };
    let (base_mean, base_median) = (mean(&rps["plain"]), median(&rps["plain"]));
    let base_cpu = per_req("plain").0;
    println!("\nloadavg at end: {}\n", loadavg());
    println!("| variant | req/s mean of {rounds} | ratio | req/s median | ratio | HAProxy CPU µs/req | ratio (plain / variant) | agent CPU µs/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (v, _, _) in variants {
        let (m, md) = (mean(&rps[v]), median(&rps[v]));
        let (h, a) = per_req(v);
        println!(
            "| {v} | {m:.0} | {:.3} | {md:.0} | {:.3} | {h:.1} | {:.3} | {a:.1} |",
            m / base_mean,
            md / base_median,
            base_cpu / h
        );
    }
    println!(
        "\nSPOE NOTIFY frames answered: {}, rejected connections: {}, HTTP errors: {errors}",
        SpoeMetrics::get(&agent.metrics.notifies),
        SpoeMetrics::get(&agent.metrics.rejected)
    );
}

/// One request on a fresh connection: status and headers.
fn request(
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, BTreeMap<String, String>)> {
    let mut c = Client::new(addr);
    c.get(headers)
}

/// A keep-alive HTTP/1.1 client with request headers (the harness's has none).
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    fn get(
        &mut self,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, BTreeMap<String, String>)> {
        let r = self.get_once(headers);
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    fn get_once(
        &mut self,
        headers: &[(&str, &str)],
    ) -> std::io::Result<(u16, BTreeMap<String, String>)> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().expect("connected");
        let mut req = String::from("GET / HTTP/1.1\r\nhost: bench\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        conn.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("closed"));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut hdrs = BTreeMap::new();
        loop {
            let mut h = String::new();
            conn.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                hdrs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = hdrs
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        conn.read_exact(&mut body)?;
        if hdrs.get("connection").is_some_and(|c| c == "close") {
            self.conn = None;
        }
        Ok((status, hdrs))
    }
}

/// One answered request of the paced load.
#[derive(Clone, Copy)]
struct Sample {
    /// Seconds since the start of the load.
    at: f64,
    /// Latency (ms); negative for a failed request.
    ms: f64,
    status: u16,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn restart(fe: SocketAddr, agent: &mut RealAgent) {
    let rate = env_num("BENCH_RATE", 200) as f64;
    let workers = 4usize;
    let (base, down, up) = (5.0f64, 3.0f64, 5.0f64);
    println!(
        "\nagent restart: {rate} req/s in {workers} keep-alive clients, every request pinned (one SPOE message each); \
         agent killed at {base} s, started again at {} s, load ends at {} s; loadavg {}",
        base + down,
        base + down + up,
        loadavg()
    );
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let period = Duration::from_secs_f64(workers as f64 / rate);
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(fe);
                let mut next = t0 + period.mul_f64(w as f64 / workers as f64);
                while !stop.load(Ordering::SeqCst) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += period;
                    let start = Instant::now();
                    let r = c.get(&[("x-haserf-node", "origin")]);
                    let ms = start.elapsed().as_secs_f64() * 1000.0;
                    let s = Sample {
                        at: start.duration_since(t0).as_secs_f64(),
                        ms: if r.is_ok() { ms } else { -1.0 },
                        status: r.map(|r| r.0).unwrap_or(0),
                    };
                    samples.lock().unwrap().push(s);
                }
            })
        })
        .collect();
    let at = |secs: f64| {
        let t = t0 + Duration::from_secs_f64(secs);
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    };
    at(base);
    let killed = t0.elapsed().as_secs_f64();
    agent.kill();
    at(base + down);
    let restarted = t0.elapsed().as_secs_f64();
    agent.restart();
    at(base + down + up);
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("load thread");
    }
    let samples = samples.lock().unwrap().clone();
    let phase = |from: f64, to: f64| -> (usize, usize, usize, Vec<f64>) {
        let mut ms: Vec<f64> = Vec::new();
        let (mut failed, mut refused) = (0, 0);
        for s in samples.iter().filter(|s| s.at >= from && s.at < to) {
            if s.ms < 0.0 {
                failed += 1;
            } else {
                ms.push(s.ms);
                if s.status == 403 {
                    refused += 1;
                }
            }
        }
        ms.sort_by(f64::total_cmp);
        (ms.len() + failed, failed, refused, ms)
    };
    let end = base + down + up;
    let phases = [
        ("baseline (agent up)", 1.0, killed),
        ("first second after the kill", killed, killed + 1.0),
        (
            "agent down, from 1 s after the kill",
            killed + 1.0,
            restarted,
        ),
        ("first second after the restart", restarted, restarted + 1.0),
        (
            "agent up again, from 1 s after the restart",
            restarted + 1.0,
            end,
        ),
    ];
    let base_p99 = percentile(&phase(1.0, killed).3, 0.99);
    println!("\n| phase | requests | failed | 403 | p50 ms | p99 ms | max ms | p99 added ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, from, to) in phases {
        let (n, failed, refused, ms) = phase(from, to);
        let p99 = percentile(&ms, 0.99);
        println!(
            "| {name} | {n} | {failed} | {refused} | {:.2} | {p99:.2} | {:.2} | {:+.2} |",
            percentile(&ms, 0.5),
            ms.last().copied().unwrap_or(f64::NAN),
            p99 - base_p99
        );
    }
    println!(
        "\n(403: pinned requests refused because the pinned-node rule fails closed while the agent is down)"
    );
    if std::env::var("BENCH_BUCKETS").is_ok() {
        let mut b: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for s in &samples {
            b.entry((s.at * 4.0) as u64).or_default().push(s.ms);
        }
        for (k, mut v) in b {
            v.sort_by(f64::total_cmp);
            println!(
                "{:5.2} s: {:3} requests, p50 {:7.2} max {:7.2}",
                k as f64 / 4.0,
                v.len(),
                percentile(&v, 0.5),
                v.last().unwrap()
            );
        }
    }
}
