//! The agent's log lines as an operator reads them in a file or in journald: plain text
//! (colour only on a terminal, and not with NO_COLOR), `encrypted` right in the start line,
//! no "ready" line from an agent that never reached HAProxy, and no partition-guard alert
//! when members leave gracefully.

mod support;

use std::time::Duration;

use support::agent::{haserf_bin, web_nodes, WebNode};
use support::{
    alloc_ip, wait_until, Haproxy, HaserfAgent, HaserfOptions, Launch, Proc, SerfOptions, SerfPeer,
};

const T: Duration = Duration::from_secs(30);

fn member(node: &str, extra: &[&str], join: Option<std::net::SocketAddr>) -> HaserfAgent {
    let mut o = HaserfOptions::member(node).args(extra);
    if let Some(j) = join {
        o = o.join(j);
    }
    HaserfAgent::start(o)
}

fn start_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("agent started"))
        .unwrap_or_else(|| panic!("no start line in\n{log}"))
        .to_string()
}

#[test]
fn logs_written_to_a_file_carry_no_ansi_escape() {
    // a load balancer with HAProxy and members: slot changes, warnings, debug lines
    let h = Haproxy::start_slots("web", 4);
    let nodes = web_nodes(2, "web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(nodes[0].serf.bind_addr()),
    );
    agent.wait_serving(&["web1", "web2"], T);
    let log = agent.log();
    assert!(log.contains("slot change"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escape in a log file:\n{log}");
}

/// Runs the agent on a pseudo-terminal (`script`), with `env`; returns its output once the
/// start line is there.
fn agent_on_a_terminal(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ip = alloc_ip();
    let cmd = format!(
        "{} agent --node tty --bind {ip}:7946 --status-socket {} --profile local",
        haserf_bin(),
        dir.path().join("s.sock").display()
    );
    let log = dir.path().join("tty.log");
    let mut launch = Launch::new("script", &["-qfec", &cmd, "/dev/null"], &log);
    for (k, v) in env {
        launch = launch.env(k, v);
    }
    let _p = Proc::spawn(launch);
    wait_until(T, "the start line on the terminal", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("agent started") {
            Ok(text)
        } else {
            Err(text)
        }
    })
}

#[test]
fn logs_are_coloured_on_a_terminal_unless_no_color_is_set() {
    assert!(
        agent_on_a_terminal(&[]).contains("\x1b["),
        "colour on a terminal"
    );
    let plain = agent_on_a_terminal(&[("NO_COLOR", "1")]);
    assert!(!plain.contains('\x1b'), "NO_COLOR: {plain:?}");
}

#[test]
fn the_start_line_says_encrypted_exactly_when_a_key_is_configured() {
    let key = support::serf::serf_keygen();
    let seed = SerfPeer::start(SerfOptions::new("web1").encrypt(&key));
    // several starts: the line must not depend on how fast the keyring is installed
    for i in 0..3 {
        let a = member(
            &format!("enc{i}"),
            &[&format!("--encrypt={key}")],
            Some(seed.bind_addr()),
        );
        let line = start_line(&a.log());
        assert!(line.contains("encrypted=true"), "{line}");
    }
    let plain = member("plain", &[], None);
    let line = start_line(&plain.log());
    assert!(line.contains("encrypted=false"), "{line}");
}

#[test]
fn an_agent_that_never_reached_haproxy_logs_no_ready_line_when_it_stops() {
    let node = WebNode::start("web1", None);
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-haproxy.sock");
    let mut agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &missing, "web").join(node.serf.bind_addr()),
    );
    wait_until(T, "the agent to try HAProxy", || {
        let log = agent.log();
        if log.contains("HAProxy reconcile failed") {
            Ok(())
        } else {
            Err(log)
        }
    });
    agent.signal("TERM");
    assert_eq!(agent.wait_exit(T), Some(0));
    let log = agent.log();
    assert!(log.contains("leaving gracefully"), "{log}");
    assert!(
        !log.lines().any(|l| l.contains("ready:")),
        "a ready line from an agent that never reached HAProxy:\n{log}"
    );
}

#[test]
fn half_of_a_backend_leaving_gracefully_raises_no_partition_guard_alert() {
    let h = Haproxy::start_slots("web", 6);
    let mut nodes = web_nodes(4, "web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(nodes[0].serf.bind_addr()),
    );
    agent.wait_serving(&["web1", "web2", "web3", "web4"], T);
    // a scale-down: two of four leave at once, as `docker compose up --scale web=2` does
    let leavers: Vec<std::thread::JoinHandle<()>> = nodes
        .drain(2..)
        .map(|mut n| {
            std::thread::spawn(move || {
                n.serf.leave();
                drop(n);
            })
        })
        .collect();
    for l in leavers {
        l.join().unwrap();
    }
    wait_until(T, "the two leavers' slots freed", || {
        let placed = agent.placed();
        if placed.len() == 2 {
            Ok(())
        } else {
            Err(placed)
        }
    });
    let st = agent.status();
    assert_eq!(st["haproxy"]["alerts"], serde_json::json!([]), "{st}");
    assert!(
        !agent.log().contains("partition guard"),
        "{}",
        agent.decisions()
    );
}

/// The first log line containing every needle, waited for.
fn wait_line(agent: &HaserfAgent, needles: &[&str]) -> String {
    wait_until(T, &format!("a log line with {needles:?}"), || {
        let log = agent.log();
        match log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            Some(l) => Ok(l.to_string()),
            None => Err(agent.decisions()),
        }
    })
}

#[test]
fn slot_log_lines_name_the_member_and_the_exact_reason_for_a_refusal_a_leave_and_a_crash() {
    let h = Haproxy::start_slots("web", 4);
    let mut nodes = web_nodes(3, "web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(nodes[0].serf.bind_addr()),
    );
    agent.wait_serving(&["web1", "web2", "web3"], T);

    // a crash (first, while two others serve, so the partition guard does not hold it):
    // the slot is emptied as a crash, naming the member
    nodes[2].serf.kill();
    wait_line(&agent, &["slot change", "member=\"web3\"", "reason=crash"]);

    // a tag the policy refuses: drained with the refusal's words, then released
    let (ok, _, err) = nodes[0].serf.cli("tags", &["-set", "port=http"]);
    assert!(ok, "serf tags: {err}");
    wait_line(
        &agent,
        &[
            "slot change",
            "member=\"web1\"",
            "reason=refused: invalid port tag",
        ],
    );
    // a graceful leave: drained as a leave, then the slot is freed as released
    nodes[1].serf.leave();
    wait_line(&agent, &["slot change", "member=\"web2\"", "reason=leave"]);
    wait_line(
        &agent,
        &[
            "slot freed",
            "member=\"web2\"",
            "reason=released",
            "after=leave",
        ],
    );

    let log = agent.log();
    assert!(
        !log.contains("member=\"-\""),
        "every slot line names its member:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("member=\"web3\"") && l.contains("released")),
        "a crash is not logged as a release:\n{log}"
    );
}

#[test]
fn a_slot_stuck_on_its_first_check_raises_a_first_check_alert_and_metric_until_the_member_leaves() {
    let h = Haproxy::start_slots("web", 2);
    // a member whose app is not there: HAProxy's check never passes
    let ip = alloc_ip();
    let mut o = SerfOptions::new("noapp1")
        .tag("role", "web")
        .tag("port", "1");
    o.ip = Some(ip);
    let mut node = SerfPeer::start(o);
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web")
            .join(node.bind_addr())
            .args(&["--first-check-alert", "1s"]),
    );
    let alert = wait_until(T, "a first_check alert", || {
        let st = agent.status();
        st["haproxy"]["alerts"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|a| a["kind"] == "first_check" && a["active"] == true)
                    .cloned()
            })
            .ok_or(st)
    });
    assert!(
        alert["message"].as_str().unwrap().contains("noapp1"),
        "{alert}"
    );
    wait_line(&agent, &["first passing health check", "member=noapp1"]);
    assert!(
        agent
            .metrics()
            .contains("haserf_alerts_active{kind=\"first_check\"} 1"),
        "{}",
        agent.metrics()
    );
    node.leave();
    wait_until(T, "the first_check alert resolved", || {
        let st = agent.status();
        let active = st["haproxy"]["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["kind"] == "first_check" && a["active"] == true)
        });
        if active {
            Err(st)
        } else {
            Ok(())
        }
    });
}

#[test]
fn an_unreachable_haproxy_socket_is_logged_once_not_once_per_retry() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-haproxy.sock");
    let agent = HaserfAgent::start(HaserfOptions::manager("lb1", &missing, "web"));
    // about one retry a second once the backoff is at its cap
    wait_until(Duration::from_secs(20), "six failed attempts", || {
        let st = agent.status();
        match st["haproxy"]["apply_errors"].as_u64() {
            Some(n) if n >= 6 => Ok(()),
            _ => Err(st),
        }
    });
    let log = agent.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("HAProxy reconcile failed"))
        .count();
    assert_eq!(lines, 1, "the same error logged once:\n{log}");
}
