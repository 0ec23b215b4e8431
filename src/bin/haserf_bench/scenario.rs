//! The bench scenarios. Each builds a fresh topology for one side, puts steady load on it from
//! the client host, does its membership changes, and returns named figures.

use std::time::{Duration, Instant};

use super::cluster::{Cluster, Side, WebAgent};
use super::haproxy;
use super::load::{now_us, percentile, LoadMonitor, LoadSpec};
use super::topology::wait_for;

/// Knobs shared by the scenarios.
#[derive(Clone, Debug)]
pub struct Opts {
    /// Requests per second of the steady load.
    pub rate: u32,
    /// Joins measured by `join`.
    pub joins: u32,
    /// Crashes / leaves measured by `crash` / `leave`.
    pub repeat: u32,
    /// Length of `churn`, seconds.
    pub churn_secs: u64,
    /// Seconds between churn events.
    pub churn_every: f64,
    /// Nodes of `mass-join`.
    pub mass: u32,
    /// Upper bound for every process.
    pub proc_timeout: u64,
    /// What the web hosts run.
    pub web_agent: WebAgent,
}

/// One figure: name, value, unit; lower is better for all of them.
#[derive(Clone, Debug)]
pub struct Figure {
    /// What it measures.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Unit (`ms`, `requests`, `KiB`, …).
    pub unit: &'static str,
}

fn fig(name: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        name: name.to_string(),
        value,
        unit,
    }
}

/// The scenario names, in the order `all` runs them.
pub const SCENARIOS: &[&str] = &["join", "crash", "leave", "churn", "mass-join"];

/// Runs scenario `name` for `side`.
pub fn run(name: &str, side: Side, o: &Opts) -> Result<Vec<Figure>, String> {
    match name {
        "join" => join(side, o),
        "crash" => crash(side, o),
        "leave" => leave(side, o),
        "churn" => churn(side, o),
        "mass-join" => mass_join(side, o),
        other => Err(format!(
            "unknown scenario {other:?} (one of {}, all)",
            SCENARIOS.join(", ")
        )),
    }
}

/// Starts lb, the first `base` web hosts (app + serf), waits until all serve, starts load.
fn setup(
    side: Side,
    hosts: u32,
    base: u32,
    o: &Opts,
    slots: u32,
) -> Result<(Cluster, LoadMonitor), String> {
    let mut c = Cluster::new(side, hosts, slots, o.proc_timeout)?;
    c.start_lb()?;
    for i in 1..=base {
        let h = format!("web{i}");
        c.start_app(&h)?;
        c.start_agent(&h, o.web_agent)?;
    }
    let load = LoadMonitor::start(
        &c.lab,
        &c.client,
        &LoadSpec {
            target: c.frontend(),
            rate: o.rate,
            timeout_ms: 5000,
            max_inflight: 512,
            max_secs: o.proc_timeout,
            stop_on_eof: true,
        },
    )?;
    let t0 = now_us();
    let names: Vec<String> = (1..=base).map(|i| format!("web{i}")).collect();
    wait_for(
        Duration::from_secs(60),
        "the base web hosts to serve",
        || {
            load.with(|s| names.iter().all(|n| s.first_after(n, t0).is_some()))
                .then_some(())
        },
    )?;
    // A quiet second so the start-up churn is behind us.
    std::thread::sleep(Duration::from_secs(1));
    c.note_haproxy_pid()?;
    Ok((c, load))
}

/// The agent's own "member change → runtime command" latency over the scenario, p50 and
/// p99 as the upper bound of the histogram bucket they fall in (haserf sides; `—` for the
/// others, which have no such measure).
fn agent_latency(c: &Cluster) -> Vec<Figure> {
    let Some(b) = c.change_to_command_buckets() else {
        return Vec::new();
    };
    let total = b.last().map(|x| x.1).unwrap_or(0);
    let q = |p: f64| {
        let need = (total as f64 * p).ceil() as u64;
        b.iter()
            .find(|(_, n)| *n >= need.max(1))
            .map(|(le, _)| le * 1000.0)
            .unwrap_or(f64::NAN)
    };
    vec![
        fig("agent: change → command p50 (≤ bucket)", q(0.5), "ms"),
        fig("agent: change → command p99 (≤ bucket)", q(0.99), "ms"),
        fig("agent: changes measured", total as f64, "changes"),
    ]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Join → first request served by the new node, `o.joins` times (p50, p99).
fn join(side: Side, o: &Opts) -> Result<Vec<Figure>, String> {
    const BASE: u32 = 3;
    const POOL: u32 = 3;
    let (mut c, load) = setup(side, BASE + POOL, BASE, o, 16)?;
    let from = now_us();
    let mut lat = Vec::new();
    for i in 0..o.joins {
        let h = format!("web{}", BASE + 1 + i % POOL);
        c.start_app(&h)?;
        let t = now_us();
        c.start_agent(&h, o.web_agent)?;
        let served = wait_for(Duration::from_secs(60), &format!("{h} to serve"), || {
            load.with(|s| s.first_after(&h, t))
        })?;
        lat.push(served.saturating_sub(t));
        c.leave(&h)?;
        wait_for(
            Duration::from_secs(60),
            &format!("{h} out of rotation"),
            || (!c.in_rotation(&h)).then_some(()),
        )?;
    }
    let to = now_us();
    c.check_haproxy_pid()?;
    let agent = agent_latency(&c);
    let stats = load.stop();
    let w = stats.window(from, to);
    lat.sort_unstable();
    Ok([
        vec![
            fig("join → first served, p50", ms(percentile(&lat, 50.0)), "ms"),
            fig("join → first served, p99", ms(percentile(&lat, 99.0)), "ms"),
            fig("failed requests during joins", w.failed as f64, "requests"),
        ],
        agent,
    ]
    .concat())
}

/// kill -9 of app and agent under load: time until out of rotation, failed requests.
fn crash(side: Side, o: &Opts) -> Result<Vec<Figure>, String> {
    removal(side, o, "crash", Duration::from_secs(2), |c, h| c.crash(h))
}

/// Graceful leave under load: failed requests, time until out of rotation.
fn leave(side: Side, o: &Opts) -> Result<Vec<Figure>, String> {
    removal(side, o, "leave", Duration::from_secs(1), |c, h| c.leave(h))
}

/// Removes `o.repeat` web hosts one after the other with `remove`, under load, and measures
/// how long each takes to leave rotation and how many requests failed; `settle` separates
/// two removals.
fn removal(
    side: Side,
    o: &Opts,
    what: &str,
    settle: Duration,
    remove: impl Fn(&mut Cluster, &str) -> Result<(), String>,
) -> Result<Vec<Figure>, String> {
    let base = 3 + o.repeat;
    let (mut c, load) = setup(side, base, base, o, 16)?;
    let from = now_us();
    let mut out = Vec::new();
    let mut last_new = Vec::new();
    for i in 0..o.repeat {
        let h = format!("web{}", base - i);
        let t = Instant::now();
        let t_us = now_us();
        remove(&mut c, &h)?;
        wait_for(
            Duration::from_secs(60),
            &format!("{h} out of rotation"),
            || (!c.in_rotation(&h)).then_some(()),
        )?;
        out.push(t.elapsed().as_micros() as u64);
        std::thread::sleep(settle);
        // the removal started at t_us; the node's last new request says when the load
        // balancer stopped sending to it (the wait above also includes `serf leave` itself)
        let last = load.with(|s| s.last_sent_to(&h, t_us)).unwrap_or(t_us);
        last_new.push(last.saturating_sub(t_us));
    }
    last_new.sort_unstable();
    c.check_haproxy_pid()?;
    let agent = agent_latency(&c);
    let stats = load.stop();
    let w = stats.window(from, now_us());
    out.sort_unstable();
    Ok([
        vec![
            fig(
                &format!("{what} → out of rotation, median"),
                ms(percentile(&out, 50.0)),
                "ms",
            ),
            fig(
                &format!("{what} → last new request to the node, median"),
                ms(percentile(&last_new, 50.0)),
                "ms",
            ),
            fig(
                &format!("failed requests per {what}"),
                w.failed as f64 / f64::from(o.repeat.max(1)),
                "requests",
            ),
        ],
        agent,
    ]
    .concat())
}

/// Churn under load: a node joins or leaves every `churn_every` s for `churn_secs` s.
fn churn(side: Side, o: &Opts) -> Result<Vec<Figure>, String> {
    const BASE: u32 = 3;
    const POOL: u32 = 5;
    let (mut c, load) = setup(side, BASE + POOL, BASE, o, 16)?;
    let reloads0 = c.reloads();
    let from = now_us();
    let start = Instant::now();
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut events = 0u32;
    while start.elapsed() < Duration::from_secs(o.churn_secs) {
        let due = Duration::from_secs_f64(o.churn_every * f64::from(events + 1));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if start.elapsed() >= Duration::from_secs(o.churn_secs) {
            break;
        }
        // xorshift: a fixed, reproducible sequence of pool hosts.
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let h = format!("web{}", BASE + 1 + (rng_state % u64::from(POOL)) as u32);
        if c.web(&h).map(|w| w.has_agent()).unwrap_or(false) {
            c.leave(&h)?;
        } else {
            c.start_app(&h)?;
            c.start_agent(&h, o.web_agent)?;
        }
        events += 1;
    }
    let to = now_us();
    // Let in-flight reloads settle before reading memory.
    std::thread::sleep(Duration::from_secs(2));
    let (procs, kib) = c
        .haproxy_pgid()
        .map(haproxy::group_memory)
        .unwrap_or((0, 0));
    let reloads = c.reloads() - reloads0;
    c.check_haproxy_pid()?;
    let stats = load.stop();
    let w = stats.window(from, to);
    Ok(vec![
        fig("churn: membership changes", f64::from(events), "events"),
        fig("churn: requests sent", w.total as f64, "requests"),
        fig("churn: p50 latency", w.p50_ms, "ms"),
        fig("churn: failed requests", w.failed as f64, "requests"),
        fig("churn: p99 latency", w.p99_ms, "ms"),
        fig("churn: reloads", reloads as f64, "reloads"),
        fig("churn: HAProxy processes at end", procs as f64, "processes"),
        fig("churn: HAProxy RSS at end", kib as f64, "KiB"),
    ])
}

/// `o.mass` nodes join at once: time until every one has served a request.
fn mass_join(side: Side, o: &Opts) -> Result<Vec<Figure>, String> {
    const BASE: u32 = 3;
    let total = BASE + o.mass;
    let slots = (total + 8).max(16);
    let (mut c, load) = setup(side, total, BASE, o, slots)?;
    let names: Vec<String> = (BASE + 1..=total).map(|i| format!("web{i}")).collect();
    for h in &names {
        c.start_app(h)?;
    }
    let reloads0 = c.reloads();
    let applies0 = c.applies();
    let from = now_us();
    let t = Instant::now();
    for h in &names {
        c.start_agent(h, o.web_agent)?;
    }
    let started = t.elapsed();
    wait_for(Duration::from_secs(180), "every new node to serve", || {
        load.with(|s| names.iter().all(|n| s.first_after(n, from).is_some()))
            .then_some(())
    })?;
    let all = load.with(|s| {
        names
            .iter()
            .filter_map(|n| s.first_after(n, from))
            .max()
            .unwrap_or(from)
    });
    c.check_haproxy_pid()?;
    let agent = agent_latency(&c);
    let batches = c.applies();
    let stats = load.stop();
    let w = stats.window(from, now_us());
    let mut figures = vec![
        fig(
            &format!("{} joins at once → all served", o.mass),
            ms(all.saturating_sub(from)),
            "ms",
        ),
        fig(
            "  (of which starting the agents)",
            started.as_secs_f64() * 1000.0,
            "ms",
        ),
        fig(
            "failed requests during mass join",
            w.failed as f64,
            "requests",
        ),
        fig(
            "reloads during mass join",
            (c.reloads() - reloads0) as f64,
            "reloads",
        ),
    ];
    if let Some((b0, b1)) = applies0.zip(batches) {
        figures.push(fig(
            "agent: runtime-API batches during mass join",
            b1.saturating_sub(b0) as f64,
            "batches",
        ));
    }
    figures.extend(agent);
    Ok(figures)
}
