//! Companion overhead: requests per second through a real HAProxy with and without the
//! SPOE messages (engine `haserf`, shipped haproxy/spoe.conf) and with and without the Lua
//! fetch (`X-Served-By %[lua.haserf_node]`), in one run, as ratios to the plain frontend.
//!
//! One HAProxy process, four frontends sharing one backend slot whose server is an
//! in-process `http-request return` listener; the SPOE agent and the status socket run in
//! this process. Load comes from `wrk` (Debian package `wrk`), loopback only, bounded in
//! time. Rounds are interleaved (plain, spoe, lua, both, plain, …) so drift hits every
//! variant alike.
//!
//! Run: `cargo bench --bench companion` (env: BENCH_SECS per run, default 5; BENCH_ROUNDS,
//! default 3; BENCH_CONNS, default 32; BENCH_THREADS for wrk, default 2).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use haserf::control::model::{
    MemberStatus, MemberView, MembersReply, Request, SlotState, SlotView, SlotsReply,
};
use haserf::control::server::{error_value, Handler, SocketOptions, StatusServer};
use haserf::spoe::{self, ClusterView, SpoeConfig, SpoeMetrics, StaticView};
use serde_json::Value;
use support::*;

struct ViewHandler(Arc<StaticView>);

impl Handler for ViewHandler {
    fn handle(&self, request: Request) -> Value {
        match request {
            Request::Members => serde_json::to_value(MembersReply {
                members: self.0.members(),
            })
            .unwrap_or(Value::Null),
            Request::Slots => serde_json::to_value(SlotsReply {
                slots: self.0.slots(),
            })
            .unwrap_or(Value::Null),
            _ => error_value("not in the benchmark"),
        }
    }
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs wrk against `url`; returns requests/s and the non-2xx/socket error count.
fn wrk(url: &str, secs: u64, conns: u64, threads: u64) -> (f64, u64) {
    let out = Command::new("timeout")
        .args([
            &(secs + 30).to_string(),
            "wrk",
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            url,
        ])
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
    (rps, errors)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    require_binary("haproxy");
    require_binary("wrk");
    let secs = env_num("BENCH_SECS", 5);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let conns = env_num("BENCH_CONNS", 32);
    let threads = env_num("BENCH_THREADS", 2);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("haserf.sock");

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

    let server = rt
        .block_on(StatusServer::bind(&SocketOptions::new(&sock)))
        .expect("status socket");
    let handler: Arc<dyn Handler> = Arc::new(ViewHandler(view.clone()));
    rt.spawn(async move { server.serve(handler).await });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((alloc_ip(), 0)))
        .expect("SPOE port");
    let spoe_addr = listener.local_addr().expect("addr");
    let cfg = SpoeConfig::new(spoe_addr);
    let metrics = cfg.metrics.clone();
    let cluster: Arc<dyn ClusterView> = view.clone();
    rt.spawn(spoe::serve_listener(
        listener,
        cfg,
        cluster,
        std::future::pending::<()>(),
    ));

    let variants = ["plain", "spoe", "lua", "both"];
    let fe: Vec<SocketAddr> = variants
        .iter()
        .map(|_| {
            let ip = alloc_ip();
            SocketAddr::from((ip, free_port_on(ip)))
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spoe_conf = root.join("haproxy/spoe.conf");
    let body = format!(
        "frontend plain
    bind {p}
    default_backend web

frontend spoe
    bind {s}
    filter spoe engine haserf config {conf}
    http-response set-header X-Haserf-Node %[var(txn.haserf.server_node)]
    http-response set-header X-Haserf-Live %[var(txn.haserf.backend_live)]
    default_backend web

frontend lua
    bind {l}
    http-response set-header X-Served-By %[lua.haserf_node]
    default_backend web

frontend both
    bind {b}
    filter spoe engine haserf config {conf}
    http-response set-header X-Haserf-Node %[var(txn.haserf.server_node)]
    http-response set-header X-Haserf-Live %[var(txn.haserf.backend_live)]
    http-response set-header X-Served-By %[lua.haserf_node]
    default_backend web

backend web
    http-reuse always
    server web1 {origin}

listen origin
    bind {origin}
    http-request return status 200 content-type text/plain string ok

backend haserf-spoe
    mode tcp
    timeout connect 2s
    timeout server 1m
    server haserf {spoe_addr}
",
        p = fe[0],
        s = fe[1],
        l = fe[2],
        b = fe[3],
        conf = spoe_conf.display(),
    );
    let h = Haproxy::start(HaproxyConfig::new(&body).global(&format!(
        "    setenv HASERF_STATUS_SOCKET {}\n    setenv HASERF_REFRESH_MS 1000\n    lua-load {}",
        sock.display(),
        root.join("lua/haserf.lua").display()
    )));

    // Every variant must really do its work before it is measured.
    wait_until(
        std::time::Duration::from_secs(15),
        "companion headers on the `both` frontend",
        || {
            let r = http_get(fe[3], "/").map_err(|e| e.to_string())?;
            match (r.header("x-served-by"), r.header("x-haserf-node")) {
                (Some("origin"), Some("origin")) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );

    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "companion bench: haproxy pid {}, {rounds} rounds x {secs}s per variant, wrk -t{threads} -c{conns}, {nproc} CPUs, loadavg at start: {}",
        h.pid(),
        loadavg()
    );
    let mut results: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut errors: u64 = 0;
    for round in 1..=rounds {
        for (i, v) in variants.iter().enumerate() {
            let (rps, err) = wrk(&format!("http://{}/", fe[i]), secs, conns, threads);
            errors += err;
            println!("round {round} {v:>5}: {rps:>10.0} req/s ({err} errors)");
            results.entry(v).or_default().push(rps);
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
    let (base_mean, base_median) = (mean(&results["plain"]), median(&results["plain"]));
    println!("\nloadavg at end: {}\n", loadavg());
    println!("| variant | req/s mean of {rounds} | ratio | req/s median | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for v in variants {
        let (m, md) = (mean(&results[v]), median(&results[v]));
        println!(
            "| {v} | {m:.0} | {:.3} | {md:.0} | {:.3} |",
            m / base_mean,
            md / base_median
        );
    }
    println!(
        "\nSPOE NOTIFY frames answered: {}, rejected connections: {}, HTTP errors: {errors}",
        SpoeMetrics::get(&metrics.notifies),
        SpoeMetrics::get(&metrics.rejected)
    );
    drop(h);
}
