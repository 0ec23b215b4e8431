//! The client commands as scripts use them: `haserf status` exit statuses (0 ready, 1 not
//! ready, 2 unreachable) and `--wait-ready`, `HASERF_STATUS_SOCKET`, `haserf members` filters
//! compared with a real `serf members` given the same filters, `haserf slots --used/--state`,
//! and `haserf leave` returning only once the agent has left.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::agent::{haserf_bin, WebNode};
use support::process::short_command;
use support::{Haproxy, HaserfAgent, HaserfOptions, SerfOptions, SerfPeer};

const T: Duration = Duration::from_secs(30);

/// Runs the haserf binary (bounded to 90 s) with extra environment; (exit code, stdout, stderr).
fn haserf_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = short_command(None, 90, haserf_bin(), args);
    c.env_remove("HASERF_STATUS_SOCKET");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run haserf");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn haserf(args: &[&str]) -> (i32, String, String) {
    haserf_env(args, &[])
}

fn sock_flag(agent: &HaserfAgent) -> String {
    format!("--status-socket={}", agent.status_socket().display())
}

#[test]
fn status_exits_2_when_no_agent_answers_even_after_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let not_a_socket = dir.path().join("file");
    std::fs::write(&not_a_socket, "x").unwrap();
    for path in [&missing, &not_a_socket] {
        let flag = format!("--status-socket={}", path.display());
        let (code, out, err) = haserf(&["status", &flag]);
        assert_eq!(code, 2, "{path:?}: {out}{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    let flag = format!("--status-socket={}", missing.display());
    let t0 = Instant::now();
    let (code, _, err) = haserf(&["status", &flag, "--wait-ready=1s"]);
    assert_eq!(code, 2, "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(1), "it waited");
}

#[test]
fn status_exits_1_while_not_ready_and_0_once_ready_and_wait_ready_waits_for_it() {
    let mut h = Haproxy::start_slots("web", 4);
    let node = WebNode::start("web1", None);
    h.stop();
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(node.serf.bind_addr()),
    );
    let sock = sock_flag(&agent);
    // the cluster is known, HAProxy is not there: not ready, and the text says why
    let (code, out, err) = haserf(&["status", &sock]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("ready: false ("), "{out}");
    let t0 = Instant::now();
    let (code, _, _) = haserf(&["status", &sock, "--wait-ready=1s"]);
    assert_eq!(code, 1);
    assert!(t0.elapsed() >= Duration::from_secs(1));

    // a waiting client follows HAProxy coming back
    let waiter = {
        let sock = sock.clone();
        std::thread::spawn(move || haserf(&["status", &sock, "--wait-ready"]))
    };
    h.restart();
    let (code, out, err) = waiter.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ready: true\n"), "{out}");

    // the environment variable stands for --status-socket
    let path = agent.status_socket().display().to_string();
    let (code, out, err) = haserf_env(
        &["status", "--format=json"],
        &[("HASERF_STATUS_SOCKET", &path)],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ready"], true);

    // slots: used only, and by state
    agent.wait_serving(&["web1"], T);
    let rows = |args: &[&str]| -> Vec<String> {
        let (code, out, err) = haserf_env(args, &[("HASERF_STATUS_SOCKET", &path)]);
        assert_eq!(code, 0, "{args:?}: {err}");
        out.lines().skip(1).map(str::to_string).collect()
    };
    let used = rows(&["slots", "--used"]);
    assert_eq!(used.len(), 1, "{used:?}");
    assert!(used[0].contains("web1"), "{used:?}");
    assert_eq!(rows(&["slots", "--state=maint"]).len(), 3);
    assert_eq!(rows(&["slots", "--state", "ready,drain"]).len(), 1);
    assert_eq!(rows(&["slots", "--used", "--state=maint"]).len(), 0);
    let (code, _, err) = haserf(&["slots", &sock, "--state=gone"]);
    assert_eq!(code, 2, "a bad state is a usage error: {err}");
}

fn names_of(json: &str) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn members_filters_select_what_serf_members_selects_with_the_same_filters() {
    let seed = SerfPeer::start(SerfOptions::new("web1").tag("role", "web"));
    let _web2 = SerfPeer::start(
        SerfOptions::new("web2")
            .tag("role", "web")
            .tag("zone", "a")
            .join(seed.bind_addr()),
    );
    let mut db1 = SerfPeer::start(
        SerfOptions::new("db1")
            .tag("role", "db")
            .join(seed.bind_addr()),
    );
    let agent = HaserfAgent::start(HaserfOptions::member("lb1").join(seed.bind_addr()));
    db1.leave();
    seed.wait_status("db1", "left", T);
    support::wait_until(T, "the agent to see db1 left", || {
        let m = agent.member_statuses();
        if m.get("db1").map(String::as_str) == Some("left") {
            Ok(())
        } else {
            Err(m)
        }
    });
    seed.wait_status("lb1", "alive", T);
    let sock = sock_flag(&agent);
    let cases: &[&[&str]] = &[
        &[],
        &["-status=alive"],
        &["-status=left"],
        &["-status=alive|left"],
        &["-status=ali"],
        &["-name=web.*"],
        &["-name=web"],
        &["-name=x|db1"],
        &["-tag", "role=web"],
        &["-tag", "role=web", "-tag", "zone=a"],
        &["-tag", "zone="],
        &["-tag", "zone=.+", "-status=alive"],
        &["-tag", "role=w.b", "-name=web[0-9]"],
    ];
    let mut distinct = BTreeSet::new();
    for filters in cases {
        let mut serf_args = vec!["-format=json"];
        serf_args.extend_from_slice(filters);
        let (ok, serf_out, err) = seed.cli("members", &serf_args);
        assert!(ok, "serf members {filters:?}: {err}");
        // serf's `-flag` is haserf's `--flag`; `-tag` takes its value as the next word in both
        let long: Vec<String> = filters
            .iter()
            .map(|f| {
                if f.starts_with('-') {
                    format!("-{f}")
                } else {
                    f.to_string()
                }
            })
            .collect();
        let mut ours = vec!["members", sock.as_str(), "--format=json"];
        ours.extend(long.iter().map(String::as_str));
        let (code, out, err) = haserf(&ours);
        assert_eq!(code, 0, "{ours:?}: {err}");
        assert_eq!(
            names_of(&out),
            names_of(&serf_out),
            "haserf members {filters:?} differs from serf members"
        );
        distinct.insert(names_of(&out));
    }
    assert!(
        distinct.len() >= 6,
        "the filters select different sets: {distinct:?}"
    );
    let (code, _, err) = haserf(&["members", &sock, "--name=web("]);
    assert_eq!(code, 1);
    assert!(err.contains("--name"), "{err}");
}

#[test]
fn leave_returns_once_the_agent_has_left_and_says_so() {
    let seed = SerfPeer::start(SerfOptions::new("web1").tag("role", "web"));
    let mut agent = HaserfAgent::start(HaserfOptions::member("lb1").join(seed.bind_addr()));
    seed.wait_status("lb1", "alive", T);
    let (code, out, err) = haserf(&["leave", &sock_flag(&agent)]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "Graceful leave complete\n");
    // done means done: when the command returns, the agent has left (not just been asked)
    assert!(
        agent.log().contains("left the cluster gracefully"),
        "{}",
        agent.log()
    );
    assert_eq!(agent.wait_exit(Duration::from_secs(5)), Some(0));
    seed.wait_status("lb1", "left", T);

    let dir = tempfile::tempdir().unwrap();
    let flag = format!("--status-socket={}", dir.path().join("none.sock").display());
    let (code, _, err) = haserf(&["leave", &flag, "--timeout=2s"]);
    assert_eq!(code, 1, "{err}");
}
