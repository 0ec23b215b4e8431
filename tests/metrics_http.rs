//! `haserf agent --metrics-bind`: the `/metrics` endpoint read by Prometheus' own Python
//! parsers (`prometheus_client` from PyPI, installed by scripts/install-deps.sh), the same
//! families through `haserf metrics`, and the listener's bounds (per-peer limit, first-byte
//! deadline, head size cap, unknown paths and methods).

mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{web_nodes, WebNode};
use support::{alloc_ip, free_port_on, http_get, wait_until, Haproxy, HaserfAgent, HaserfOptions};

const T: Duration = Duration::from_secs(30);

/// The virtualenv python with `prometheus_client`, or a panic saying how to get it.
fn python() -> PathBuf {
    let env = std::env::var_os("HASERF_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv"));
    let py = env.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import prometheus_client: run scripts/install-deps.sh (it puts \
         prometheus_client from PyPI in a virtualenv there)",
        py.display()
    );
    py
}

/// Both Python parsers' view of an exposition: parser → family → {type, samples}.
fn parse_with_prometheus_client(text: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/prom_parse.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(
    families: &BTreeMap<String, Value>,
    family: &str,
    sample: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    families.get(family)?["samples"]
        .as_array()?
        .iter()
        .find(|s| {
            s[0] == sample
                && labels
                    .iter()
                    .all(|(k, v)| s[1].get(*k).and_then(Value::as_str) == Some(*v))
        })
        .and_then(|s| s[2].as_f64())
}

struct Lb {
    _h: Haproxy,
    _nodes: Vec<WebNode>,
    agent: HaserfAgent,
    metrics: SocketAddr,
}

fn load_balancer_with_metrics(nodes: usize) -> Lb {
    let h = Haproxy::start_slots("web", 4);
    let nodes = web_nodes(nodes, "web");
    let ip = alloc_ip();
    let metrics = SocketAddr::from((ip, free_port_on(ip)));
    let bind = format!("--metrics-bind={metrics}");
    let mut opts = HaserfOptions::manager("lb1", &h.admin_socket(), "web")
        .join(nodes[0].serf.bind_addr())
        .args(&[&bind]);
    opts.ip = Some(ip);
    let agent = HaserfAgent::start(opts);
    let names: Vec<&str> = nodes.iter().map(WebNode::name).collect();
    agent.wait_serving(&names, T);
    Lb {
        _h: h,
        _nodes: nodes,
        agent,
        metrics,
    }
}

#[test]
fn metrics_endpoint_is_read_by_prometheus_parsers_and_has_every_listed_family() {
    let lb = load_balancer_with_metrics(2);
    let r = wait_until(T, "GET /metrics with a latency sample", || {
        let r = http_get(lb.metrics, "/metrics").map_err(|e| e.to_string())?;
        if r.body
            .contains("haserf_member_change_to_command_seconds_count{backend=\"web\"}")
        {
            Ok(r)
        } else {
            Err(r.body)
        }
    });
    assert_eq!(r.status, 200);
    let ctype = r
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        ctype,
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let parsed = parse_with_prometheus_client(&r.body);
    for (parser, families) in &parsed {
        for family in [
            "haserf_build_info",
            "haserf_ready",
            "haserf_members",
            "haserf_gossip_packets",
            "haserf_gossip_dropped",
            "haserf_slots",
            "haserf_slots_used",
            "haserf_slots_free",
            "haserf_queue_length",
            "haserf_applies",
            "haserf_apply_errors",
            "haserf_drift_repairs",
            "haserf_refused_members",
            "haserf_partition_guard_holding",
            "haserf_member_change_to_command_seconds",
            "haserf_command_to_confirm_seconds",
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                families.contains_key(family),
                "{parser} parser: no family {family}; found {:?}",
                families.keys().collect::<Vec<_>>()
            );
        }
    }
    let om = &parsed["openmetrics"];
    assert_eq!(om["haserf_applies"]["type"], "counter");
    assert_eq!(
        om["haserf_member_change_to_command_seconds"]["type"],
        "histogram"
    );
    assert_eq!(sample(om, "haserf_ready", "haserf_ready", &[]), Some(1.0));
    assert_eq!(
        sample(
            om,
            "haserf_members",
            "haserf_members",
            &[("status", "alive")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            om,
            "haserf_slots_used",
            "haserf_slots_used",
            &[("backend", "web")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            om,
            "haserf_slots",
            "haserf_slots",
            &[("backend", "web"), ("state", "ready")]
        ),
        Some(2.0)
    );
    assert!(sample(om, "haserf_applies", "haserf_applies_total", &[]).unwrap() >= 1.0);
    let joined = sample(
        om,
        "haserf_member_change_to_command_seconds",
        "haserf_member_change_to_command_seconds_count",
        &[("backend", "web")],
    )
    .unwrap();
    assert!(joined >= 1.0, "two joins were measured: {joined}");
    assert!(sample(om, "process_open_fds", "process_open_fds", &[]).unwrap() > 0.0);

    // `haserf metrics` prints the same exposition, parsed the same way
    let (ok, out, err) = lb.agent.cli("metrics", &[]);
    assert!(ok, "{err}");
    let cli = parse_with_prometheus_client(&out);
    assert!(
        cli["openmetrics"].contains_key("haserf_slots_used"),
        "{out}"
    );
}

fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_metrics_listener_is_bounded_per_peer_in_time_and_in_size() {
    let lb = load_balancer_with_metrics(1);
    let addr = lb.metrics;
    // unknown paths and methods, a head over the cap, garbage
    assert!(raw_exchange(addr, b"GET /admin HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(raw_exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert!(raw_exchange(addr, huge.as_bytes()).starts_with("HTTP/1.1 431"));
    assert!(
        raw_exchange(addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\r\n\r\n")
            .starts_with("HTTP/1.1 400")
    );

    // a client that sends nothing is cut after the first-byte deadline (1 s)
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    let n = idle.read(&mut [0u8; 16]).unwrap_or(0);
    let waited = t0.elapsed();
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "cut after {waited:?}"
    );

    // four silent connections from one address hold its places; the fifth is closed at once
    // (the listener accepts in connection order, so the four are admitted first)
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut fifth = TcpStream::connect(addr).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t0 = Instant::now();
    let n = fifth.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "closed before the first-byte deadline: {:?}",
        t0.elapsed()
    );
    drop(held);
    // the places free again and every refusal was counted
    let body = wait_until(T, "a scrape after the limits", || {
        let r = http_get(addr, "/metrics").map_err(|e| e.to_string())?;
        if r.body.contains("reason=\"peer_limit\"") {
            Ok(r.body)
        } else {
            Err(r.body)
        }
    });
    for reason in ["peer_limit", "timeout", "too_large", "bad_request"] {
        assert!(
            body.contains(&format!(
                "haserf_metrics_http_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{body}"
        );
    }
}
