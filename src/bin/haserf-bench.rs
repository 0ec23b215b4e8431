//! `haserf-bench`: measures haserf against the reload-based design it replaces (a Serf event
//! handler that re-renders haproxy.cfg and reloads HAProxy) and against the simplest
//! no-reload rival (a script polling `serf members` every 100 ms, `--side poll`), in the
//! same run, on the same network-namespace topology, with the same HAProxy settings.
//!
//! ```text
//! cargo run --release --bin haserf-bench -- all --side all --admit both
//! cargo run --release --bin haserf-bench -- join --side baseline --joins 5
//! ```
//!
//! Needs root (network namespaces), haproxy and serf. See docs/bench/e2e.md.
#![forbid(unsafe_code)]

#[path = "haserf_bench/app.rs"]
mod app;
#[path = "haserf_bench/cluster.rs"]
mod cluster;
#[path = "haserf_bench/haproxy.rs"]
mod haproxy;
#[path = "haserf_bench/load.rs"]
mod load;
#[path = "haserf_bench/scenario.rs"]
mod scenario;
#[path = "haserf_bench/topology.rs"]
mod topology;

use clap::{Parser, Subcommand, ValueEnum};

use cluster::Side;

/// Bench haserf against the reload-based baseline on a netns topology.
#[derive(Debug, Parser)]
#[command(name = "haserf-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SideArg {
    Baseline,
    Poll,
    Haserf,
    /// baseline and haserf.
    Both,
    /// baseline, poll and haserf.
    All,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum AdmitArg {
    Check,
    Gossip,
    Both,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a scenario: join, crash, leave, churn, mass-join, or all.
    #[command(external_subcommand)]
    Scenario(Vec<String>),
    /// (internal) The web hosts' HTTP app.
    App {
        #[arg(long)]
        bind: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
    /// (internal) The client host's load generator.
    Loadgen {
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 200)]
        rate: u32,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 512)]
        max_inflight: usize,
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
        /// Stop at end of stdin too (SIGTERM / SIGINT always stop it).
        #[arg(long)]
        stop_on_eof: bool,
    },
}

/// Flags of a scenario run.
#[derive(Debug, Parser)]
#[command(name = "haserf-bench SCENARIO")]
struct ScenarioArgs {
    /// join, crash, leave, churn, mass-join, or all.
    scenario: String,
    /// Which side(s) to measure.
    #[arg(long, value_enum, default_value_t = SideArg::Both)]
    side: SideArg,
    /// The haserf side's admission mode(s) (`--admit`).
    #[arg(long, value_enum, default_value_t = AdmitArg::Check)]
    admit: AdmitArg,
    /// Steady load, requests per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Joins measured by `join`.
    #[arg(long, default_value_t = 20)]
    joins: u32,
    /// Crashes / leaves measured by `crash` / `leave`.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Length of `churn`, seconds.
    #[arg(long, default_value_t = 60)]
    churn_secs: u64,
    /// Seconds between churn events.
    #[arg(long, default_value_t = 3.0)]
    churn_every: f64,
    /// Nodes of `mass-join`.
    #[arg(long, default_value_t = 50)]
    mass: u32,
    /// Upper bound for every process started, seconds.
    #[arg(long, default_value_t = 900)]
    proc_timeout: u64,
    /// What the web hosts run: stock serf, or haserf in backend-node mode.
    #[arg(long, value_enum, default_value_t = WebArg::Serf)]
    web_agent: WebArg,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum WebArg {
    Serf,
    Haserf,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::App {
            bind,
            name,
            max_secs,
        } => report(app::serve(&bind, &name, max_secs)),
        Cmd::Loadgen {
            target,
            rate,
            timeout_ms,
            max_inflight,
            max_secs,
            stop_on_eof,
        } => report(load::generate(load::LoadSpec {
            target,
            rate,
            timeout_ms,
            max_inflight,
            max_secs,
            stop_on_eof,
        })),
        Cmd::Scenario(argv) => {
            let args =
                ScenarioArgs::parse_from(std::iter::once("haserf-bench".to_string()).chain(argv));
            run_scenarios(&args)
        }
    };
    std::process::exit(code);
}

fn report(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("haserf-bench: {e}");
            1
        }
    }
}

fn run_scenarios(a: &ScenarioArgs) -> i32 {
    topology::install_signal_cleanup();
    let opts = scenario::Opts {
        rate: a.rate,
        joins: a.joins,
        repeat: a.repeat,
        churn_secs: a.churn_secs,
        churn_every: a.churn_every,
        mass: a.mass,
        proc_timeout: a.proc_timeout,
        web_agent: match a.web_agent {
            WebArg::Serf => cluster::WebAgent::Serf,
            WebArg::Haserf => cluster::WebAgent::Haserf,
        },
    };
    let names: Vec<&str> = if a.scenario == "all" {
        scenario::SCENARIOS.to_vec()
    } else {
        vec![a.scenario.as_str()]
    };
    let haserf: Vec<Side> = match a.admit {
        AdmitArg::Check => vec![Side::Haserf],
        AdmitArg::Gossip => vec![Side::HaserfGossip],
        AdmitArg::Both => vec![Side::Haserf, Side::HaserfGossip],
    };
    let sides: Vec<Side> = match a.side {
        SideArg::Baseline => vec![Side::Baseline],
        SideArg::Poll => vec![Side::Poll],
        SideArg::Haserf => haserf,
        SideArg::Both => [vec![Side::Baseline], haserf].concat(),
        SideArg::All => [vec![Side::Baseline, Side::Poll], haserf].concat(),
    };
    let mut failed = false;
    print_header(&sides);
    for name in names {
        let mut results: Vec<Result<Vec<scenario::Figure>, String>> = Vec::new();
        for side in &sides {
            eprintln!("haserf-bench: {name} ({})…", side.name());
            let r = scenario::run(name, *side, &opts);
            if let Err(e) = &r {
                eprintln!("haserf-bench: {name} ({}) failed: {e}", side.name());
                failed = true;
            }
            results.push(r);
        }
        print_rows(name, &sides, &results);
    }
    if failed {
        1
    } else {
        0
    }
}

/// The ratio columns: every haserf side against each rival that runs.
fn ratio_pairs(sides: &[Side]) -> Vec<(Side, Side)> {
    let rivals = [Side::Poll, Side::Baseline];
    let mut pairs = Vec::new();
    for h in sides
        .iter()
        .filter(|s| matches!(s, Side::Haserf | Side::HaserfGossip))
    {
        for r in rivals.iter().filter(|r| sides.contains(r)) {
            pairs.push((*h, *r));
        }
    }
    pairs
}

fn short(side: Side) -> &'static str {
    match side {
        Side::Baseline => "reload",
        Side::Poll => "poll",
        Side::Haserf => "check",
        Side::HaserfGossip => "gossip",
    }
}

fn print_header(sides: &[Side]) {
    let mut cols: Vec<String> = vec!["scenario".into(), "figure".into()];
    cols.extend(sides.iter().map(|s| s.name().to_string()));
    for (h, r) in ratio_pairs(sides) {
        cols.push(format!("{} / {}", short(h), short(r)));
    }
    println!("| {} |", cols.join(" | "));
    println!("|{}", "---|".repeat(cols.len()));
}

fn print_rows(name: &str, sides: &[Side], results: &[Result<Vec<scenario::Figure>, String>]) {
    let get = |side: Side| -> Option<&Vec<scenario::Figure>> {
        let i = sides.iter().position(|s| *s == side)?;
        results[i].as_ref().ok()
    };
    // the longest list: the haserf sides add the agent's own latency figures
    let figures = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max_by_key(|v| v.len())
        .cloned()
        .unwrap_or_default();
    let pairs = ratio_pairs(sides);
    if figures.is_empty() {
        println!(
            "| {name} | (failed) |{}",
            " |".repeat(sides.len() + pairs.len())
        );
    }
    for (i, f) in figures.iter().enumerate() {
        let value = |side: Side| get(side).and_then(|v| v.get(i)).map(|f| f.value);
        let mut cols = vec![name.to_string(), f.name.clone()];
        for s in sides {
            cols.push(match value(*s) {
                Some(v) => format!("{} {}", trim(v), f.unit),
                None => "—".into(),
            });
        }
        for (h, r) in &pairs {
            cols.push(match (value(*h), value(*r)) {
                (Some(h), Some(r)) if r > 0.0 => format!("{:.2}", h / r),
                (Some(h), Some(r)) if r == 0.0 && h == 0.0 => "= (both 0)".into(),
                _ => "—".into(),
            });
        }
        println!("| {} |", cols.join(" | "));
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
