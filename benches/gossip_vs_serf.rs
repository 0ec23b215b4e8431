//! Resident memory and CPU of a haserf member next to a stock serf agent in the same
//! 20-node cluster (18 more serf agents), measured side by side over the same window.
//!
//! Run: `cargo bench --bench gossip_vs_serf` (env `BENCH_SECS`, default 60; `BENCH_NODES`,
//! default 20). Prints both figures and the haserf/serf ratio.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::{alloc_ip, wait_until, Launch, Proc};

fn proc_stat(pid: u32) -> Option<(u64, u64)> {
    // (cpu ticks utime+stime, rss kB)
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

fn serf_members(ip: std::net::Ipv4Addr) -> Option<String> {
    let o = support::process::short_command(
        None,
        10,
        "serf",
        &["members", &format!("-rpc-addr={ip}:7373"), "-status=alive"],
    )
    .output()
    .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).to_string())
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let nodes: usize = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("haserf-bench-gossip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut serfs: Vec<(Proc, std::net::Ipv4Addr)> = Vec::new();
    let mut seed: Option<SocketAddr> = None;
    for i in 0..nodes - 1 {
        let ip = alloc_ip();
        let mut args = vec![
            "agent".to_string(),
            format!("-node=s{i}"),
            format!("-bind={ip}:7946"),
            format!("-rpc-addr={ip}:7373"),
            "-tag".into(),
            "role=web".into(),
        ];
        if let Some(s) = seed {
            args.push(format!("-join={s}"));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut l = Launch::new("serf", &argv, dir.join(format!("s{i}.log")));
        l.timeout_secs = Some(secs + 180);
        serfs.push((Proc::spawn(l), ip));
        wait_until(Duration::from_secs(10), "serf RPC", || {
            serf_members(ip).ok_or(())
        });
        seed.get_or_insert(SocketAddr::new(IpAddr::V4(ip), 7946));
    }
    let hip = alloc_ip();
    let sock = dir.join("h.sock");
    let args = [
        "agent".to_string(),
        "--node".into(),
        "haserf".into(),
        "--bind".into(),
        format!("{hip}:7946"),
        "--join".into(),
        seed.unwrap().to_string(),
        "--tag".into(),
        "role=web".into(),
        "--status-socket".into(),
        sock.display().to_string(),
        "--log-level".into(),
        "warn".into(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut l = Launch::new(env!("CARGO_BIN_EXE_haserf"), &argv, dir.join("haserf.log"));
    l.timeout_secs = Some(secs + 180);
    let h = Proc::spawn(l);
    let probe_ip = serfs[nodes / 2].1;
    wait_until(
        Duration::from_secs(60),
        "cluster of all nodes alive",
        || {
            let m = serf_members(probe_ip).unwrap_or_default();
            if m.lines().count() == nodes && m.contains("haserf") {
                Ok(())
            } else {
                Err(m.lines().count())
            }
        },
    );
    // Compare with a serf agent that is neither the seed nor the probe target.
    let serf_pid = serfs[1].0.wait_main_pid();
    let h_pid = h.wait_main_pid();
    std::thread::sleep(Duration::from_secs(5));
    let (h0, _) = proc_stat(h_pid).expect("haserf stat");
    let (s0, _) = proc_stat(serf_pid).expect("serf stat");
    let t0 = Instant::now();
    let mut h_rss_max = 0;
    let mut s_rss_max = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if let Some((_, r)) = proc_stat(h_pid) {
            h_rss_max = h_rss_max.max(r);
        }
        if let Some((_, r)) = proc_stat(serf_pid) {
            s_rss_max = s_rss_max.max(r);
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let (h1, h_rss) = proc_stat(h_pid).expect("haserf stat");
    let (s1, s_rss) = proc_stat(serf_pid).expect("serf stat");
    let hz = 100.0;
    let h_cpu = (h1 - h0) as f64 / hz / el * 100.0;
    let s_cpu = (s1 - s0) as f64 / hz / el * 100.0;
    let alive = serf_members(probe_ip).unwrap_or_default().lines().count();
    println!("gossip_vs_serf: {nodes}-node cluster (1 haserf + {} serf, lan profile), {el:.0} s steady state", nodes - 1);
    println!("  members alive at the end (as serf sees them): {alive}");
    println!(
        "  RSS end/max  haserf {h_rss}/{h_rss_max} kB   serf {s_rss}/{s_rss_max} kB   ratio haserf/serf {:.2}",
        h_rss as f64 / s_rss as f64
    );
    println!(
        "  CPU          haserf {h_cpu:.2} %   serf {s_cpu:.2} %   ratio haserf/serf {:.2}",
        if s_cpu > 0.0 { h_cpu / s_cpu } else { f64::NAN }
    );
    let hlog = std::fs::read_to_string(dir.join("haserf.log")).unwrap_or_default();
    let suspected = serfs
        .iter()
        .map(|(p, _)| p.log())
        .filter(|l| l.contains("Suspect haserf") || l.contains("EventMemberFailed: haserf"))
        .count();
    println!(
        "  serf agents that ever suspected haserf: {suspected}; haserf warnings logged: {}",
        hlog.lines().count()
    );
}
