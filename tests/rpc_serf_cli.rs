//! The stock `serf` CLI as the client of a haserf agent's Serf RPC (`--rpc-addr`): members
//! with every filter, event, query, tags, join, force-leave, info, monitor, keys, leave,
//! reachability, auth, and malformed input on a raw socket. The cluster around the agent is
//! made of real `serf agent`s, which judge what the commands did.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::agent::{HaserfAgent, HaserfOptions};
use support::{program, wait_until, SerfOptions, SerfPeer};

const T: Duration = Duration::from_secs(20);

/// `serf members -format json [args]` against the agent: name → (status, tags).
fn members(
    agent: &HaserfAgent,
    args: &[&str],
) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    let mut all = vec!["-format=json"];
    all.extend_from_slice(args);
    let (ok, out, err) = agent.serf_cli("members", &all);
    assert!(ok, "serf members {args:?}: {out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    // No match prints `"members": null`, as against serf.
    v["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let tags = serde_json::from_value(m["tags"].clone()).unwrap_or_default();
            (
                m["name"].as_str().unwrap().to_string(),
                (m["status"].as_str().unwrap().to_string(), tags),
            )
        })
        .collect()
}

fn names(m: &BTreeMap<String, (String, BTreeMap<String, String>)>) -> Vec<&str> {
    m.keys().map(String::as_str).collect()
}

/// A serf node `s1` (role=web) with `handlers`, a haserf member `h1` (role=lb) joined to
/// it, and a second serf node `s2` (role=db) with the same handlers.
fn cluster(handlers: &[&str], agent_args: &[&str]) -> (SerfPeer, SerfPeer, HaserfAgent) {
    let mut o1 = SerfOptions::new("s1").tag("role", "web");
    for h in handlers {
        o1 = o1.handler(h);
    }
    let s1 = SerfPeer::start(o1.clone().fast_reap("8s"));
    let mut o2 = SerfOptions::new("s2")
        .tag("role", "db")
        .join(s1.bind_addr());
    for h in handlers {
        o2 = o2.handler(h);
    }
    let s2 = SerfPeer::start(o2.fast_reap("8s"));
    let h1 = HaserfAgent::start(
        HaserfOptions::member("h1")
            .join(s1.bind_addr())
            .args(&["--tag=role=lb"])
            .args(agent_args),
    );
    wait_until(T, "h1 to see the three members alive over serf RPC", || {
        let m = members(&h1, &["-status=alive"]);
        if m.len() == 3 {
            Ok(())
        } else {
            Err(m)
        }
    });
    (s1, s2, h1)
}

#[test]
fn serf_members_against_haserf_lists_the_cluster_with_every_filter() {
    let (s1, _s2, h1) = cluster(&[], &[]);
    let all = members(&h1, &[]);
    assert_eq!(names(&all), ["h1", "s1", "s2"]);
    assert_eq!(all["s1"].1.get("role").map(String::as_str), Some("web"));
    assert_eq!(all["h1"].1.get("role").map(String::as_str), Some("lb"));
    // The same view a stock serf agent has of the cluster.
    let serf_view: BTreeSet<(String, String)> = s1
        .members()
        .into_iter()
        .map(|m| (m.name, m.status))
        .collect();
    let ours: BTreeSet<(String, String)> = all
        .iter()
        .map(|(n, (s, _))| (n.clone(), s.clone()))
        .collect();
    assert_eq!(ours, serf_view);
    assert_eq!(names(&members(&h1, &["-tag", "role=web"])), ["s1"]);
    assert_eq!(names(&members(&h1, &["-tag", "role=web|db"])), ["s1", "s2"]);
    assert_eq!(names(&members(&h1, &["-name", "s.*"])), ["s1", "s2"]);
    assert_eq!(
        names(&members(&h1, &["-status", "alive", "-name", "h1"])),
        ["h1"]
    );
    assert!(members(&h1, &["-status", "failed"]).is_empty());
    // Text output: one line per member with its address and status, like against serf.
    let (ok, out, err) = h1.serf_cli("members", &["-detailed"]);
    assert!(ok, "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("h1 ")).expect(&out);
    assert!(
        line.contains(&h1.bind_addr().to_string()) && line.contains("alive"),
        "{out}"
    );
    assert!(
        line.contains("Protocol Version: 5"),
        "-detailed shows the protocol versions: {out}"
    );
    // A bad expression is an error, not a crash.
    let (ok, out, err) = h1.serf_cli("members", &["-name", "("]);
    assert!(!ok && (out + &err).contains("regex"), "bad regex refused");
    assert_eq!(
        names(&members(&h1, &[])),
        ["h1", "s1", "s2"],
        "still serving"
    );
}

#[test]
fn serf_event_through_haserf_runs_stock_serf_event_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("deploy.txt");
    let handler = format!("user:deploy=cat >> {}", got.display());
    let (_s1, _s2, h1) = cluster(&[&handler], &[]);
    let (ok, out, err) = h1.serf_cli("event", &["-coalesce=false", "deploy", "v2"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Event 'deploy' dispatched"), "{out}");
    wait_until(
        T,
        "both serf nodes' handlers to receive the payload",
        || {
            let s = std::fs::read_to_string(&got).unwrap_or_default();
            if s.matches("v2").count() == 2 {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
}

#[test]
fn serf_tags_set_and_delete_through_haserf_are_seen_by_serf_nodes() {
    let (s1, _s2, h1) = cluster(&[], &[]);
    let (ok, out, err) = h1.serf_cli(
        "tags",
        &["-set", "dc=east", "-set", "weight=7", "-delete", "role"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("Successfully updated agent tags"), "{out}");
    let want = BTreeMap::from([
        ("dc".to_string(), "east".to_string()),
        ("weight".to_string(), "7".to_string()),
    ]);
    wait_until(T, "s1 to see h1's new tags", || {
        let m = s1.members().into_iter().find(|m| m.name == "h1");
        match m {
            Some(m) if m.tags == want => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(members(&h1, &["-name", "h1"])["h1"].1, want);
}

#[test]
fn serf_join_and_force_leave_through_haserf_change_what_serf_nodes_see() {
    let s1 = SerfPeer::start(SerfOptions::new("s1").fast_reap("30s"));
    let mut s2 = SerfPeer::start(SerfOptions::new("s2").fast_reap("30s").join(s1.bind_addr()));
    let h1 = HaserfAgent::start(HaserfOptions::member("h1"));
    let seed = s1.bind_addr().to_string();
    let (ok, out, err) = h1.serf_cli("join", &[&seed]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Successfully joined cluster by contacting 1 nodes"),
        "{out}"
    );
    s1.wait_status("h1", "alive", T);
    // A join nobody answers fails with serf's wording and exit status.
    let (ok, out, err) = h1.serf_cli("join", &["127.0.0.1:1"]);
    assert!(
        !ok && (out.clone() + &err).contains("Error joining"),
        "{out}{err}"
    );
    s2.kill();
    s1.wait_status("s2", "failed", T);
    wait_until(T, "h1 to see s2 failed", || {
        let m = members(&h1, &[]);
        if m.get("s2").map(|x| x.0.as_str()) == Some("failed") {
            Ok(())
        } else {
            Err(m)
        }
    });
    let (ok, out, err) = h1.serf_cli("force-leave", &["s2"]);
    assert!(ok, "{out}{err}");
    s1.wait_status("s2", "left", T);
    assert_eq!(members(&h1, &["-name", "s2"])["s2"].0, "left");
}

#[test]
fn serf_info_against_haserf_shows_serfs_sections() {
    let (_s1, _s2, h1) = cluster(&[], &[]);
    let (ok, out, err) = h1.serf_cli("info", &["-format=json"]);
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["agent"]["name"], "h1");
    assert_eq!(v["serf"]["members"], "3");
    assert_eq!(v["serf"]["encrypted"], "false");
    assert_eq!(v["tags"]["role"], "lb");
    for k in [
        "member_time",
        "event_time",
        "query_time",
        "health_score",
        "failed",
        "left",
    ] {
        assert!(v["serf"][k].is_string(), "serf.{k} in {out}");
    }
    let (ok, out, _) = h1.serf_cli("info", &[]);
    assert!(
        ok && out.contains("agent:") && out.contains("name = h1"),
        "{out}"
    );
}

#[test]
fn serf_query_through_haserf_collects_acks_and_responses_with_filters() {
    let handler = "query:greet=echo hello from $SERF_SELF_NAME";
    let (_s1, _s2, h1) = cluster(&[handler], &[]);
    let q = |extra: &[&str]| -> (BTreeSet<String>, BTreeMap<String, String>) {
        let mut args = vec!["-format=json", "-timeout=2s"];
        args.extend_from_slice(extra);
        args.extend(["greet", "hi"]);
        let (ok, out, err) = h1.serf_cli("query", &args);
        assert!(ok, "serf query {extra:?}: {out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let acks = v["Acks"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let resp = serde_json::from_value(v["Responses"].clone()).unwrap_or_default();
        (acks, resp)
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let (acks, resp) = q(&[]);
    assert_eq!(acks, set(&["h1", "s1", "s2"]), "every member acks");
    assert_eq!(resp.get("s1").map(|s| s.trim()), Some("hello from s1"));
    assert_eq!(resp.get("s2").map(|s| s.trim()), Some("hello from s2"));
    let (acks, resp) = q(&["-tag", "role=web"]);
    assert_eq!(acks, set(&["s1"]));
    assert_eq!(resp.keys().cloned().collect::<BTreeSet<_>>(), set(&["s1"]));
    let (acks, resp) = q(&["-node", "s2"]);
    assert_eq!(acks, set(&["s2"]));
    assert_eq!(resp.keys().cloned().collect::<BTreeSet<_>>(), set(&["s2"]));
    let (acks, resp) = q(&["-no-ack"]);
    assert!(acks.is_empty(), "{acks:?}");
    assert_eq!(resp.len(), 2, "{resp:?}");
    // The agent's own status query, answered by haserf itself.
    let (ok, out, err) = h1.serf_cli("query", &["-timeout=2s", "haserf-status"]);
    assert!(ok && out.contains("Response from 'h1'"), "{out}{err}");
}

#[test]
fn serf_reachability_through_haserf_contacts_every_member() {
    let (_s1, _s2, h1) = cluster(&[], &[]);
    let (ok, out, err) = h1.serf_cli("reachability", &[]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Total members: 3, live members: 3")
            && out.contains("Successfully contacted all live nodes"),
        "{out}"
    );
}

#[test]
fn serf_monitor_against_haserf_streams_the_agents_log_lines() {
    let (_s1, _s2, h1) = cluster(&[], &[]);
    let rpc = format!("-rpc-addr={}", h1.rpc_addr());
    let mut child = std::process::Command::new("timeout")
        .args(["30", &program("serf"), "monitor", &rpc, "-log-level=debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serf monitor");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Something the agent logs: a user event it receives.
    let deadline = Instant::now() + T;
    let mut seen = Vec::new();
    let mut found = false;
    while Instant::now() < deadline && !found {
        let (ok, out, err) = h1.serf_cli("event", &["-coalesce=false", "monitored", "x"]);
        assert!(ok, "{out}{err}");
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            found |= l.contains("user event") && l.contains("monitored");
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no monitor line about the event; got: {seen:#?}");
    // An unknown level is serf's error.
    let (ok, out, err) = h1.serf_cli("monitor", &["-log-level=loud"]);
    assert!(
        !ok && (out + &err).contains("Unknown log level"),
        "bad level refused"
    );
}

#[test]
fn serf_keys_through_haserf_list_install_use_and_remove_on_every_member() {
    let k1 = support::serf::serf_keygen();
    let k2 = support::serf::serf_keygen();
    let s1 = SerfPeer::start(SerfOptions::new("s1").encrypt(&k1));
    let h1 = HaserfAgent::start(
        HaserfOptions::member("h1")
            .join(s1.bind_addr())
            .args(&[&format!("--encrypt={k1}")]),
    );
    s1.wait_status("h1", "alive", T);
    let keys = |agent: &HaserfAgent| {
        let (ok, out, err) = agent.serf_cli("keys", &["-list"]);
        assert!(ok, "serf keys -list: {out}{err}");
        out
    };
    let out = keys(&h1);
    assert!(out.contains(&k1) && out.contains("[2/2]"), "{out}");
    for (op, key) in [("-install", &k2), ("-use", &k2), ("-remove", &k1)] {
        let (ok, out, err) = h1.serf_cli("keys", &[op, key]);
        assert!(ok, "serf keys {op}: {out}{err}");
        assert!(out.contains("Successfully"), "{out}");
    }
    let out = keys(&h1);
    assert!(out.contains(&k2) && !out.contains(&k1), "{out}");
    // The stock node agrees: it holds only the new key.
    let (ok, out, err) = s1.cli("keys", &["-list"]);
    assert!(ok && out.contains(&k2) && !out.contains(&k1), "{out}{err}");
    // Removing the primary key is refused by every member, with serf's summary.
    let (ok, out, err) = h1.serf_cli("keys", &["-remove", &k2]);
    assert!(!ok, "{out}{err}");
    assert!((out + &err).contains("2/2 nodes reported failure"));
}

#[test]
fn serf_leave_through_haserf_makes_the_agent_leave_gracefully() {
    let s1 = SerfPeer::start(SerfOptions::new("s1"));
    let mut h1 = HaserfAgent::start(HaserfOptions::member("h1").join(s1.bind_addr()));
    s1.wait_status("h1", "alive", T);
    let (ok, out, err) = h1.serf_cli("leave", &[]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Graceful leave complete"), "{out}");
    s1.wait_status("h1", "left", T);
    assert_eq!(h1.wait_exit(T), Some(0));
}

#[test]
fn a_wrong_rpc_auth_is_refused_and_the_right_one_is_accepted() {
    let h1 = HaserfAgent::start(HaserfOptions::member("h1").args(&["--rpc-auth=s3cret"]));
    let (ok, out, err) = h1.serf_cli("members", &["-rpc-auth=wrong"]);
    assert!(!ok, "{out}{err}");
    assert!((out + &err).contains("Invalid authentication token"));
    let (ok, out, err) = h1.serf_cli("members", &[]);
    assert!(!ok, "{out}{err}");
    assert!((out + &err).contains("Authentication required"));
    let (ok, out, err) = h1.serf_cli("members", &["-rpc-auth=s3cret"]);
    assert!(ok && out.contains("h1"), "{out}{err}");
}

/// Serf's msgpack request header `{Command, Seq}` and an optional body, written by hand.
fn request(command: &str, seq: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0x82, 0xa7];
    b.extend_from_slice(b"Command");
    b.push(0xa0 | command.len() as u8);
    b.extend_from_slice(command.as_bytes());
    b.extend_from_slice(&[0xa3, b'S', b'e', b'q', seq]);
    b.extend_from_slice(body);
    b
}

const HANDSHAKE_BODY: &[u8] = &[0x81, 0xa7, b'V', b'e', b'r', b's', b'i', b'o', b'n', 0x01];

/// Sends `bytes`, then reads until the agent closes the connection (or 5 s pass); returns
/// what was read and whether the connection was closed.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn malformed_rpc_input_gets_a_clear_error_and_the_connection_is_closed() {
    let h1 = HaserfAgent::start(HaserfOptions::member("h1"));
    let addr = h1.rpc_addr();
    let handshake = request("handshake", 1, HANDSHAKE_BODY);
    // Not msgpack at all.
    let (got, closed) = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed && text(&got).contains("malformed request"),
        "{}",
        text(&got)
    );
    // A command before the handshake.
    let (got, closed) = exchange(addr, &request("members", 1, &[]));
    assert!(
        closed && text(&got).contains("Handshake required"),
        "{}",
        text(&got)
    );
    // An unknown command after it.
    let mut b = handshake.clone();
    b.extend(request("frobnicate", 2, &[]));
    let (got, closed) = exchange(addr, &b);
    assert!(
        closed && text(&got).contains("Unsupported command"),
        "{}",
        text(&got)
    );
    // A body of the wrong shape.
    let mut b = handshake.clone();
    b.extend(request("event", 2, &[0x93, 1, 2, 3]));
    let (got, closed) = exchange(addr, &b);
    assert!(
        closed && text(&got).contains("malformed request"),
        "{}",
        text(&got)
    );
    // A request announcing 4 GiB: refused at the cap, not buffered.
    let mut b = handshake.clone();
    b.extend(request(
        "event",
        2,
        &[
            0x81, 0xa4, b'N', b'a', b'm', b'e', 0xdb, 0xff, 0xff, 0xff, 0xff,
        ],
    ));
    b.extend(std::iter::repeat_n(b'a', 70 * 1024));
    let (got, closed) = exchange(addr, &b);
    assert!(
        closed && text(&got).contains("request larger than"),
        "{}",
        text(&got)
    );
    // Silence: closed once the handshake deadline passes.
    let start = Instant::now();
    let (_, closed) = exchange(addr, &[]);
    assert!(
        closed && start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // A wrong handshake version is serf's error, and the connection stays usable.
    let mut b = request(
        "handshake",
        1,
        &[0x81, 0xa7, b'V', b'e', b'r', b's', b'i', b'o', b'n', 0x07],
    );
    b.extend(request("stats", 2, &[]));
    let (got, closed) = exchange(addr, &b);
    assert!(
        text(&got).contains("Unsupported IPC version") && text(&got).contains("Handshake required"),
        "{}",
        text(&got)
    );
    assert!(closed);
    // Nothing crashed: the stock CLI still works.
    assert_eq!(names(&members(&h1, &[])), ["h1"]);
}

#[test]
fn the_rpc_is_off_with_an_empty_rpc_addr() {
    let h1 = HaserfAgent::start(HaserfOptions::member("h1").args(&["--rpc-addr="]));
    let (ok, out, err) = h1.serf_cli("members", &[]);
    let all = out + &err;
    assert!(!ok && all.contains("connection refused"), "{all}");
}

/// `serf rtt` output: "Estimated a <-> b rtt: 0.123 ms (using LAN coordinates)" → ms.
fn rtt_ms(out: &str) -> Option<f64> {
    let rest = out.split("rtt: ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn serf_rtt_works_both_ways_between_serf_and_haserf_nodes() {
    let (s1, s2, h1) = cluster(&[], &[]);
    // Coordinates come with probe acks: wait until each side has the other's.
    let from_haserf = wait_until(T, "serf rtt against h1 to estimate h1 <-> s1", || {
        let (ok, out, err) = h1.serf_cli("rtt", &["s1"]);
        match rtt_ms(&out) {
            Some(ms) if ok => Ok(ms),
            _ => Err(out + &err),
        }
    });
    let from_serf = wait_until(T, "serf rtt against s1 to estimate s1 <-> h1", || {
        let (ok, out, err) = s1.cli("rtt", &["h1"]);
        match rtt_ms(&out) {
            Some(ms) if ok => Ok(ms),
            _ => Err(out + &err),
        }
    });
    let between_serfs = wait_until(T, "serf rtt s1 <-> s2", || {
        let (ok, out, err) = s1.cli("rtt", &["s2"]);
        match rtt_ms(&out) {
            Some(ms) if ok => Ok(ms),
            _ => Err(out + &err),
        }
    });
    // Loopback: every estimate is well under a millisecond scale error of serf's own.
    let tolerance = between_serfs.max(1.0) * 5.0;
    for (what, ms) in [("h1 → s1", from_haserf), ("s1 → h1", from_serf)] {
        assert!(
            ms >= 0.0 && ms <= tolerance,
            "{what}: {ms} ms, serf↔serf {between_serfs} ms"
        );
    }
    // The two-node form, computed by the haserf agent from its cache.
    let (ok, out, err) = h1.serf_cli("rtt", &["s1", "h1"]);
    assert!(ok && rtt_ms(&out).is_some(), "{out}{err}");
    drop(s2);
}

#[test]
fn with_disable_coordinates_serf_rtt_finds_no_coordinate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haserf.json");
    std::fs::write(&cfg, r#"{"disable_coordinates": true}"#).unwrap();
    let s1 = SerfPeer::start(SerfOptions::new("s1"));
    let h1 = HaserfAgent::start(
        HaserfOptions::member("h1")
            .join(s1.bind_addr())
            .args(&[&format!("--config={}", cfg.display())]),
    );
    s1.wait_status("h1", "alive", T);
    let (ok, out, err) = h1.serf_cli("rtt", &["s1"]);
    assert!(
        !ok && (out + &err).contains("Could not find a coordinate"),
        "no coordinate"
    );
}

/// `haserf VERB --rpc-addr=ADDR ARGS…`: (success, stdout, stderr).
fn haserf_verb(verb: &str, rpc: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let addr = format!("--rpc-addr={rpc}");
    let mut all = vec![verb, addr.as_str()];
    all.extend_from_slice(args);
    support::agent::run_haserf(&all)
}

#[test]
fn haserf_event_and_query_reach_stock_serf_nodes_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("deploy.txt");
    let event = format!("user:deploy=cat >> {}", got.display());
    let query = "query:greet=echo hello from $SERF_SELF_NAME";
    let (_s1, _s2, h1) = cluster(&[&event, query], &[]);
    let (ok, out, err) = haserf_verb(
        "event",
        h1.rpc_addr(),
        &["--coalesce=false", "deploy", "v2"],
    );
    assert!(
        ok && out.contains("Event 'deploy' dispatched"),
        "{out}{err}"
    );
    wait_until(
        T,
        "both serf nodes' handlers to receive the payload",
        || {
            let s = std::fs::read_to_string(&got).unwrap_or_default();
            if s.matches("v2").count() == 2 {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    let (ok, out, err) = haserf_verb(
        "query",
        h1.rpc_addr(),
        &["--format=json", "--timeout=2s", "greet", "hi"],
    );
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        v["Responses"]["s1"].as_str().map(str::trim),
        Some("hello from s1")
    );
    assert_eq!(
        v["Responses"]["s2"].as_str().map(str::trim),
        Some("hello from s2")
    );
    assert_eq!(v["Acks"].as_array().map(Vec::len), Some(3), "{out}");
    let (ok, out, err) = haserf_verb(
        "query",
        h1.rpc_addr(),
        &[
            "--format=json",
            "--timeout=2s",
            "--tag=role=db",
            "--no-ack",
            "greet",
        ],
    );
    assert!(ok, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Acks"].as_array().map(Vec::len), Some(0), "{out}");
    assert_eq!(
        v["Responses"].as_object().map(|o| o.len()),
        Some(1),
        "{out}"
    );
}

#[test]
fn haserf_verbs_work_against_haserf_and_stock_serf_agents_alike() {
    let (s1, _s2, h1) = cluster(&[], &[]);
    for (name, rpc) in [("h1", h1.rpc_addr()), ("s1", s1.rpc_addr())] {
        let (ok, out, err) = haserf_verb("info", rpc, &["--format=json"]);
        assert!(ok, "{name}: {out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["agent"]["name"], name);
        assert_eq!(v["serf"]["members"], "3");
        let (ok, out, err) = haserf_verb("tags", rpc, &["--set=verb=yes"]);
        assert!(
            ok && out.contains("Successfully updated"),
            "{name}: {out}{err}"
        );
        let other = if name == "h1" { "s2" } else { "h1" };
        let rtt = wait_until(T, &format!("haserf rtt via {name}"), || {
            let (ok, out, err) = haserf_verb("rtt", rpc, &["--format=json", other]);
            if ok {
                Ok(serde_json::from_str::<Value>(&out).unwrap())
            } else {
                Err(out + &err)
            }
        });
        assert!(rtt["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{rtt}");
    }
    wait_until(T, "s1 to see both new tags", || {
        let tagged: Vec<String> = s1
            .members()
            .into_iter()
            .filter(|m| m.tags.get("verb").map(String::as_str) == Some("yes"))
            .map(|m| m.name)
            .collect();
        if tagged.len() == 2 {
            Ok(())
        } else {
            Err(tagged)
        }
    });
    // An unreachable agent is an error with the address in it.
    let (ok, _, err) = haserf_verb("info", "127.0.0.1:1".parse().unwrap(), &[]);
    assert!(!ok && err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn in_lb_mode_serf_tags_on_a_haserf_backend_node_move_its_slot() {
    use support::{alloc_ip, Haproxy, HttpBackend};
    let h = Haproxy::start_slots("web", 4);
    let ip = alloc_ip();
    let app = HttpBackend::start_on("w1", SocketAddr::from((ip, 0)));
    let port_tag = format!("--tag=port={}", app.addr().port());
    let mut wopts = HaserfOptions::member("w1").args(&["--tag=role=web", &port_tag]);
    wopts.ip = Some(ip);
    let w1 = HaserfAgent::start(wopts);
    let lb = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web").join(w1.bind_addr()),
    );
    lb.wait_serving(&["w1"], T);
    // The stock CLI against the load balancer's agent.
    let m = members(&lb, &["-status=alive"]);
    assert_eq!(names(&m), ["lb1", "w1"]);
    // Against the backend node: the selector no longer matches, so its slot is freed…
    let (ok, out, err) = w1.serf_cli("tags", &["-delete", "role"]);
    assert!(ok, "{out}{err}");
    wait_until(T, "lb1 to free w1's slot", || {
        let placed = lb.placed();
        if placed.contains_key("w1") {
            Err(placed)
        } else {
            Ok(())
        }
    });
    // …and comes back when the tag does.
    let (ok, out, err) = w1.serf_cli("tags", &["-set", "role=web"]);
    assert!(ok, "{out}{err}");
    lb.wait_serving(&["w1"], T);
}
