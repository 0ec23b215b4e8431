//! `haserf agent` lifecycle against real serf web nodes and a real HAProxy: agent restart,
//! HAProxy restart, SIGTERM, readiness, the config file, the status socket (mode, garbage,
//! CLI clients, metrics) and the `haserf-status` query.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use support::agent::{run_haserf, web_nodes, HaserfAgent, HaserfOptions, SlotWatcher, WebNode};
use support::{http_get, wait_until, Haproxy};

const T: Duration = Duration::from_secs(20);

fn cluster(n: usize, slots: u32) -> (Haproxy, Vec<WebNode>, HaserfAgent) {
    let h = Haproxy::start_slots("web", slots);
    let nodes = web_nodes(n, "web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(nodes[0].serf.bind_addr()),
    );
    (h, nodes, agent)
}

fn names(nodes: &[WebNode]) -> Vec<&str> {
    nodes.iter().map(WebNode::name).collect()
}

fn hosts_seen(fe: SocketAddr, requests: usize) -> BTreeSet<String> {
    (0..requests)
        .filter_map(|_| http_get(fe, "/").ok())
        .filter_map(|r| r.backend_host())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn an_agent_restart_moves_no_slot() {
    let (h, nodes, mut agent) = cluster(3, 10);
    let pid = h.pid();
    let before = agent.wait_serving(&names(&nodes), T);
    let watch = SlotWatcher::start(&h.admin_socket(), "web");
    wait_until(T, "the watcher's first read", || {
        if watch.all().len() == 10 {
            Ok(())
        } else {
            Err(watch.all().len())
        }
    });
    agent.kill(); // a crash: no leave, nothing handed over
    agent.restart();
    wait_until(T, "the restarted agent to be ready", || {
        let st = agent.status();
        if st["ready"] == true {
            Ok(())
        } else {
            Err(st)
        }
    });
    let after = agent.wait_serving(&names(&nodes), T);
    assert_eq!(after, before, "every member kept its slot");
    // a few more passes of the new agent, then: HAProxy never saw a change
    let passes = agent.status()["haproxy"]["evaluations"].as_u64().unwrap();
    wait_until(T, "two more evaluations", || {
        let n = agent.status()["haproxy"]["evaluations"].as_u64().unwrap();
        if n >= passes + 2 {
            Ok(())
        } else {
            Err(n)
        }
    });
    for (slot, hist) in watch.all() {
        assert_eq!(
            hist.len(),
            1,
            "slot {slot} changed during the restart: {hist:?}\n{}",
            agent.log()
        );
    }
    assert_eq!(
        agent.status()["haproxy"]["applies"],
        0,
        "the restarted agent had nothing to apply"
    );
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn an_agent_without_join_restarted_finds_its_members_through_the_served_slots_and_moves_no_slot() {
    // The load balancer is the seed: web nodes join it, it joins nobody.
    let h = Haproxy::start_slots("web", 10);
    let pid = h.pid();
    let mut agent = HaserfAgent::start(HaserfOptions::manager("lb1", &h.admin_socket(), "web"));
    let nodes: Vec<WebNode> = (1..=3)
        .map(|i| {
            WebNode::start_with(&format!("web{i}"), Some(agent.bind_addr()), |o| {
                o.tag("role", "web")
            })
        })
        .collect();
    let before = agent.wait_serving(&names(&nodes), T);
    let watch = SlotWatcher::start(&h.admin_socket(), "web");
    wait_until(T, "the watcher's first read", || {
        if watch.all().len() == 10 {
            Ok(())
        } else {
            Err(watch.all().len())
        }
    });
    agent.kill();
    agent.restart();
    // the cluster does not notice a fast restart at the same address (the new process
    // answers the probes); the agent finds its members at the addresses HAProxy serves
    wait_until(
        Duration::from_secs(30),
        "the restarted agent to know the web nodes again",
        || {
            let m = agent.member_statuses();
            if m.len() > 1 {
                Ok(())
            } else {
                Err(format!("{m:?}\n{}", agent.log()))
            }
        },
    );
    assert_eq!(agent.wait_serving(&names(&nodes), T), before);
    for (slot, hist) in watch.all() {
        assert_eq!(
            hist.len(),
            1,
            "slot {slot} changed during the restart: {hist:?}"
        );
    }
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn an_haproxy_restart_gets_every_slot_back() {
    let (mut h, nodes, agent) = cluster(3, 10);
    let before = agent.wait_serving(&names(&nodes), T);
    let old_pid = h.pid();
    h.restart();
    assert_ne!(h.pid(), old_pid);
    wait_until(T, "the agent to see the new HAProxy", || {
        let st = agent.status();
        if st["haproxy"]["pid"] == h.pid() && st["haproxy"]["restarts_seen"] == 1 {
            Ok(())
        } else {
            Err(st["haproxy"].clone())
        }
    });
    let after = agent.wait_serving(&names(&nodes), T);
    assert_eq!(after, before, "every member is back in its own slot");
    assert_eq!(
        hosts_seen(h.frontend_addr(), 30),
        set(&names(&nodes)),
        "requests reach every node again"
    );
}

#[test]
fn sigterm_leaves_gracefully_removes_the_socket_and_haproxy_keeps_its_slots() {
    let (h, mut nodes, mut agent) = cluster(2, 10);
    let pid = h.pid();
    let serving = agent.wait_serving(&names(&nodes), T);
    let sock = agent.status_socket();
    assert!(sock.exists());
    agent.signal("TERM");
    let code = agent.wait_exit(Duration::from_secs(15));
    assert_eq!(code, Some(0), "clean exit; log:\n{}", agent.log());
    nodes[0].serf.wait_status("lb1", "left", T);
    nodes[1].serf.wait_status("lb1", "left", T);
    assert!(!sock.exists(), "the status socket file is removed");
    // HAProxy keeps serving from the slots the agent filled
    let rows = h.slots("web");
    for n in &nodes {
        let row = rows
            .iter()
            .find(|r| r.server() == serving[n.name()])
            .unwrap();
        assert_eq!(row.addr(), n.app_addr().to_string());
        assert!(row.status().starts_with("UP"), "{:?}", row.status());
    }
    assert_eq!(hosts_seen(h.frontend_addr(), 20), set(&names(&nodes)));
    // and a node leaving now changes nothing: nobody manages the slots
    nodes[1].serf.leave();
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn status_says_ready_only_after_the_first_full_reconcile() {
    let mut h = Haproxy::start_slots("web", 10);
    h.stop(); // the agent starts before HAProxy
    let nodes = web_nodes(2, "web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(nodes[0].serf.bind_addr()),
    );
    // the agent knows the cluster but cannot reach HAProxy: not ready
    wait_until(T, "the agent to see both web nodes", || {
        let m = agent.member_statuses();
        if m.contains_key("web1") && m.contains_key("web2") {
            Ok(())
        } else {
            Err(m)
        }
    });
    let st = agent.status();
    assert_eq!(st["ready"], false, "{st}");
    let (ok, out, err) = agent.cli("status", &[]);
    assert!(!ok, "not ready exits 1: {err}");
    assert!(out.starts_with("ready: false"), "{out}");
    assert!(agent.metrics().contains("haserf_ready 0"));
    h.restart();
    let st = wait_until(T, "ready", || {
        let st = agent.status();
        if st["ready"] == true {
            Ok(st)
        } else {
            Err(st)
        }
    });
    assert!(
        st["haproxy"]["applies"].as_u64() >= Some(1),
        "ready came with the first plan applied: {st}"
    );
    agent.wait_serving(&names(&nodes), T);
    let (_, out, _) = agent.cli("status", &[]);
    assert!(out.contains("ready: true"), "{out}");
}

#[test]
fn garbage_on_the_status_socket_gets_an_error_and_the_agent_keeps_serving() {
    let (h, nodes, mut agent) = cluster(2, 10);
    let pid = h.pid();
    let serving = agent.wait_serving(&names(&nodes), T);
    let replies = agent
        .exchange(&[
            "\u{1}garbage{{{",
            r#"{"cmd":"reboot"}"#,
            r#"[1,2,3]"#,
            r#"{"cmd":"slots"}"#,
        ])
        .unwrap();
    assert!(
        replies[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"),
        "{}",
        replies[0]
    );
    assert!(
        replies[1]["error"].as_str().unwrap().contains("reboot"),
        "{}",
        replies[1]
    );
    assert!(replies[2]["error"].is_string(), "{}", replies[2]);
    assert!(
        replies[3]["slots"].is_array(),
        "the same connection still serves: {}",
        replies[3]
    );
    let long = format!(r#"{{"cmd":"{}"}}"#, "x".repeat(70_000));
    let r = agent.request(&long).unwrap();
    assert!(r["error"].as_str().unwrap().contains("longer"), "{r}");
    assert!(agent.is_running());
    assert_eq!(agent.wait_serving(&names(&nodes), T), serving);
    assert_eq!(hosts_seen(h.frontend_addr(), 20), set(&names(&nodes)));
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn the_status_socket_is_mode_0600() {
    let agent = HaserfAgent::start(HaserfOptions::member("m1"));
    let mode = std::fs::metadata(agent.status_socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {:o}", mode & 0o777);
}

#[test]
fn an_unknown_config_key_makes_the_agent_exit_non_zero_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haserf.json");
    std::fs::write(
        &cfg,
        r#"{"node_name":"lb1","bind":"127.0.0.1:0","haproxy_sockett":"/run/haproxy/admin.sock"}"#,
    )
    .unwrap();
    let sock = dir.path().join("haserf.sock");
    let (ok, out, err) = run_haserf(&[
        "agent",
        "--config",
        &cfg.display().to_string(),
        "--status-socket",
        &sock.display().to_string(),
    ]);
    assert!(!ok, "the agent must not start: {out}{err}");
    assert!(err.contains("haproxy_sockett"), "names the key: {err}");
    assert!(
        err.contains(&cfg.display().to_string()),
        "names the file: {err}"
    );
    assert!(!sock.exists(), "nothing was started");
}

#[test]
fn serf_query_haserf_status_answers_with_the_slot_table() {
    let (h, nodes, agent) = cluster(2, 10);
    let pid = h.pid();
    let serving = agent.wait_serving(&names(&nodes), T);
    // Serf's own query gossip (local profile) sometimes misses a member; a query is
    // idempotent, so ask up to three times.
    let mut r = nodes[0]
        .serf
        .query("haserf-status", "", Duration::from_secs(3), &[]);
    for _ in 0..2 {
        if r.responses.contains_key("lb1") {
            break;
        }
        r = nodes[0]
            .serf
            .query("haserf-status", "", Duration::from_secs(3), &[]);
    }
    let answer = r
        .responses
        .get("lb1")
        .unwrap_or_else(|| panic!("no answer from lb1 in 3 queries: {r:?}"));
    let v: serde_json::Value = serde_json::from_str(answer).unwrap();
    assert_eq!(v["node"], "lb1");
    assert_eq!(v["ready"], true);
    assert_eq!(v["slots_used"], 2);
    assert_eq!(v["slots_free"], 8);
    for n in &nodes {
        let key = format!("web/{}", serving[n.name()]);
        assert_eq!(
            v["slots"][&key],
            serde_json::json!([n.name(), "ready"]),
            "{v}"
        );
    }
    assert!(
        r.responses.len() == 1,
        "stock serf nodes do not answer: {r:?}"
    );
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn the_cli_clients_print_members_slots_and_status() {
    let (h, nodes, agent) = cluster(2, 4);
    let pid = h.pid();
    let serving = agent.wait_serving(&names(&nodes), T);
    let (ok, out, err) = agent.cli("members", &["--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{v}");
    let web1 = members.iter().find(|m| m["name"] == "web1").unwrap();
    assert_eq!(web1["status"], "alive");
    assert_eq!(web1["tags"]["role"], "web");
    assert_eq!(web1["port"], 7946);
    let (ok, out, _) = agent.cli("slots", &["--format", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["slots"].as_array().unwrap().len(), 4, "{v}");
    let (ok, out, _) = agent.cli("slots", &[]);
    assert!(ok);
    assert!(out.starts_with("BACKEND"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" {} ", serving["web2"])))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("web2") && line.contains("ready") && line.contains("UP"),
        "{line}"
    );
    let (ok, out, _) = agent.cli("members", &[]);
    assert!(ok && out.starts_with("NAME"), "{out}");
    let (ok, out, _) = agent.cli("status", &["--format", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["haproxy"]["backends"]["web"]["used"], 2);
    assert_eq!(v["haproxy"]["backends"]["web"]["free"], 2);
    assert_eq!(v["haproxy"]["pid"], pid);
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn metrics_are_prometheus_text_with_members_slots_applies_errors_drift_queue_and_gossip() {
    let (h, nodes, agent) = cluster(2, 10);
    let pid = h.pid();
    let serving = agent.wait_serving(&names(&nodes), T);
    // drift: someone puts web1's slot in maint by hand; the agent repairs it
    h.cmd(&format!("set server web/{} state maint", serving["web1"]));
    wait_until(T, "a drift repair", || {
        let n = agent.status()["haproxy"]["drift_repairs"].as_u64().unwrap();
        if n >= 1 {
            Ok(())
        } else {
            Err(n)
        }
    });
    agent.wait_serving(&names(&nodes), T);
    // the agent gossips on its own schedule (a probe a second): with slots repaired within
    // milliseconds it may not have sent a datagram yet
    wait_until(T, "a gossip datagram sent", || {
        let n = agent.status()["gossip"]["udp_packets_out"]
            .as_u64()
            .unwrap_or(0);
        if n > 0 {
            Ok(())
        } else {
            Err(n)
        }
    });
    let text = agent.metrics();
    // OpenMetrics text: every sample line is NAME[{labels}] VALUE, after its family's TYPE
    // line (counters' samples end in _total, histograms' in _bucket/_sum/_count); the
    // document ends in # EOF. (tests/metrics_http.rs parses it with Prometheus' own parser.)
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut typed = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut f = rest.split(' ');
            let name = f.next().unwrap();
            assert!(
                matches!(f.next(), Some("counter" | "gauge" | "histogram")),
                "{line}"
            );
            typed.insert(name.to_string());
        } else if !line.starts_with('#') {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            let family_typed = ["", "_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|family| typed.contains(family))
                });
            assert!(family_typed, "sample before its TYPE: {line}");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
        }
    }
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("haserf_members{status=\"alive\"}"), 3.0);
    assert_eq!(value("haserf_members{status=\"failed\"}"), 0.0);
    assert_eq!(value("haserf_slots_used{backend=\"web\"}"), 2.0);
    assert_eq!(value("haserf_slots_free{backend=\"web\"}"), 8.0);
    assert_eq!(value("haserf_queue_length{backend=\"web\"}"), 0.0);
    assert!(value("haserf_applies_total") >= 2.0);
    assert_eq!(value("haserf_apply_errors_total"), 0.0);
    assert!(value("haserf_drift_repairs_total") >= 1.0);
    assert!(value("haserf_gossip_packets_total{direction=\"in\"}") > 0.0);
    assert!(value("haserf_gossip_packets_total{direction=\"out\"}") > 0.0);
    assert!(
        typed.contains("haserf_gossip_dropped"),
        "dropped packets family: {text}"
    );
    assert_eq!(value("haserf_ready"), 1.0);
    assert_eq!(value("haserf_haproxy_restarts_total"), 0.0);
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}
