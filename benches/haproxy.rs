//! HAProxy benchmarks (harness = false; prints figures and ratios).
//!
//! 1. Parse a 10,000-server `show stat` reply: `haserf::haproxy::StatTable` (nom, zero-copy,
//!    typed rows) against the `csv` crate reading the same bytes into reused records.
//! 2. Apply 1,000 slot changes to a real HAProxy: one batched round trip against one
//!    connection per command.
//!
//! Run: `cargo bench --bench haproxy` (needs `haproxy` installed).

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use haserf::haproxy::{Client, Command, StatTable};

const FIXTURE: &str = include_str!("../tests/fixtures/haproxy/20-show-stat-mixed-states.csv");

/// A `show stat` reply with `servers` server rows (copies of a real 2.6 UP row, renamed).
fn big_show_stat(servers: usize) -> String {
    let mut lines = FIXTURE.lines();
    let header = lines.next().unwrap();
    let row = FIXTURE
        .lines()
        .find(|l| l.starts_with("web,web1,"))
        .unwrap();
    let rest = row.strip_prefix("web,web1,").unwrap();
    let mut out = String::with_capacity(servers * (row.len() + 8) + header.len());
    out.push_str(header);
    out.push('\n');
    for i in 0..servers {
        out.push_str(&format!("web,web{},{rest}\n", i + 1));
    }
    out.push('\n');
    out
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t0 = Instant::now();
        black_box(f());
        best = best.min(t0.elapsed());
    }
    best
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn parse_bench() {
    let text = big_show_stat(10_000);
    let bytes = text.len();
    let ours = best_of(20, || {
        let t = StatTable::parse(&text).unwrap();
        // touch the typed fields the slot manager reads
        t.servers()
            .map(|r| r.scur().unwrap_or(0) + r.status_str().len() as u64)
            .sum::<u64>()
    });
    let csv_str = best_of(20, || {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut rec = csv::StringRecord::new();
        let mut n = 0u64;
        while rdr.read_record(&mut rec).unwrap() {
            n += rec.get(4).map_or(0, |s| s.len() as u64)
                + rec.get(17).map_or(0, |s| s.len() as u64);
        }
        n
    });
    let csv_bytes = best_of(20, || {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut rec = csv::ByteRecord::new();
        let mut n = 0u64;
        while rdr.read_byte_record(&mut rec).unwrap() {
            n += rec.len() as u64;
        }
        n
    });
    println!(
        "parse show stat, 10,000 servers ({:.1} MB), best of 20:",
        bytes as f64 / 1e6
    );
    println!(
        "  haserf StatTable (nom, typed rows)   {:>8.1} MB/s  ({:?})",
        mbps(bytes, ours),
        ours
    );
    println!(
        "  csv crate, StringRecord (reused)     {:>8.1} MB/s  ({:?})",
        mbps(bytes, csv_str),
        csv_str
    );
    println!(
        "  csv crate, ByteRecord (no UTF-8)     {:>8.1} MB/s  ({:?})",
        mbps(bytes, csv_bytes),
        csv_bytes
    );
    println!(
        "  ratio haserf / csv StringRecord = {:.2}x, / csv ByteRecord = {:.2}x",
        csv_str.as_secs_f64() / ours.as_secs_f64(),
        csv_bytes.as_secs_f64() / ours.as_secs_f64()
    );
}

fn apply_bench() {
    let h = support::Haproxy::start_slots("web", 50);
    let client = Client::new(&h.admin_socket().display().to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cmds = |round: u8| -> Vec<Command> {
        (0..1000u16)
            .map(|i| {
                let slot = i % 50 + 1;
                let addr = IpAddr::V4(Ipv4Addr::new(
                    10,
                    round,
                    (i / 250) as u8,
                    (i % 250) as u8 + 1,
                ));
                Command::set_addr("web", &format!("web{slot}"), addr, Some(8000 + i)).unwrap()
            })
            .collect()
    };
    let batch = cmds(1);
    let single = cmds(2);
    let mut batched = Duration::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = rt.block_on(client.run(&batch)).unwrap();
        batched = batched.min(t0.elapsed());
        assert!(r.iter().all(|r| r.is_ok()));
    }
    let t0 = Instant::now();
    for c in &single {
        let r = rt.block_on(client.run(std::slice::from_ref(c))).unwrap();
        assert!(r[0].is_ok());
    }
    let per_conn = t0.elapsed();
    println!("apply 1,000 slot changes to a real HAProxy 2.6:");
    println!("  batched, one connection (best of 5)  {:>10.1?}", batched);
    println!("  one connection per command           {:>10.1?}", per_conn);
    println!(
        "  ratio = {:.1}x (batch under 100 ms: {})",
        per_conn.as_secs_f64() / batched.as_secs_f64(),
        batched < Duration::from_millis(100)
    );
}

fn main() {
    parse_bench();
    apply_bench();
}
