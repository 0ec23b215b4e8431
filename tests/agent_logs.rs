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
