//! `haserf agent` (a separate process) filling a real HAProxy's `server-template` slots from
//! real `serf agent` web nodes, each with a real HTTP app: joins, graceful leaves, kill -9,
//! a queue when members outnumber slots, selectors, allowed networks and the partition guard.
//! Every test also checks that HAProxy was never reloaded (same pid at the end).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::agent::{web_nodes, HaserfAgent, HaserfOptions, SlotWatcher, WebNode};
use support::{http_get, wait_until, Haproxy, LoopLimits, RequestLoop};

const T: Duration = Duration::from_secs(20);

/// HAProxy with `slots` empty slots in backend `web`, `n` web nodes, and an agent managing
/// `web` joined to the first node.
fn cluster(n: usize, slots: u32, agent_args: &[&str]) -> (Haproxy, Vec<WebNode>, HaserfAgent) {
    let h = Haproxy::start_slots("web", slots);
    let nodes = web_nodes(n, "web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web")
            .join(nodes[0].serf.bind_addr())
            .args(agent_args),
    );
    (h, nodes, agent)
}

fn names(nodes: &[WebNode]) -> Vec<&str> {
    nodes.iter().map(WebNode::name).collect()
}

/// Backend names that answered `requests` GETs through the frontend.
fn hosts_seen(fe: SocketAddr, requests: usize) -> BTreeSet<String> {
    (0..requests)
        .filter_map(|_| http_get(fe, "/").ok())
        .filter_map(|r| r.backend_host())
        .collect()
}

/// The slot HAProxy shows for `addr` (`IP:PORT`), from the agent's view.
fn slot_of(agent: &HaserfAgent, member: &str) -> String {
    agent
        .placed()
        .get(member)
        .cloned()
        .unwrap_or_else(|| panic!("{member} has no slot: {:?}", agent.try_slots()))
}

#[test]
fn three_web_nodes_fill_three_slots_and_requests_reach_all_of_them() {
    let (h, nodes, agent) = cluster(3, 10, &[]);
    let pid = h.pid();
    let serving = agent.wait_serving(&names(&nodes), T);
    // each slot holds its member's app address
    let slots = agent.try_slots().unwrap();
    for n in &nodes {
        let s = slots
            .iter()
            .find(|s| s.member.as_deref() == Some(n.name()))
            .unwrap();
        assert_eq!(s.addr.as_deref(), Some(n.app_addr().to_string().as_str()));
        assert_eq!(s.slot, serving[n.name()]);
    }
    assert_eq!(
        slots.iter().filter(|s| s.member.is_none()).count(),
        7,
        "the other 7 slots stay free: {slots:?}"
    );
    let seen = hosts_seen(h.frontend_addr(), 30);
    assert_eq!(
        seen,
        names(&nodes).into_iter().map(String::from).collect(),
        "requests through HAProxy reach every node"
    );
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn a_fourth_node_that_joins_serves_within_one_second() {
    let (h, mut nodes, agent) = cluster(3, 10, &[]);
    let pid = h.pid();
    agent.wait_serving(&names(&nodes), T);
    let fourth = WebNode::start("web4", None);
    let fe = h.frontend_addr();
    // web4 joins through the load balancer's agent (its push-pull gives the agent web4 at
    // once); `serf join` returns once that exchange is done: the clock starts there.
    // (Through another seed, the news reaches the agent by gossip; in a 5-node cluster
    // memberlist retransmits an alive message only ~2 times per node, so it may take
    // until the next push-pull, 15 s in the local profile.)
    fourth.serf.join(&agent.bind_addr().to_string());
    let joined = Instant::now();
    let served = loop {
        if let Ok(r) = http_get(fe, "/") {
            if r.backend_host().as_deref() == Some("web4") {
                break joined.elapsed();
            }
        }
        assert!(
            joined.elapsed() < Duration::from_secs(10),
            "web4 never served; slots {:?}\nmembers {:?}\n{}",
            agent.try_slots(),
            agent.member_statuses(),
            agent.decisions()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!("web4 served its first request {served:?} after `serf join` returned");
    assert!(
        served < Duration::from_secs(1),
        "web4 took {served:?} to serve"
    );
    nodes.push(fourth);
    agent.wait_serving(&names(&nodes), T);
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn a_node_that_leaves_is_drained_then_freed_without_a_failed_request() {
    let (h, mut nodes, agent) = cluster(3, 10, &[]);
    let pid = h.pid();
    agent.wait_serving(&names(&nodes), T);
    let slot = slot_of(&agent, "web2");
    let watch = SlotWatcher::start(&h.admin_socket(), "web");
    let requests = RequestLoop::start(
        h.frontend_addr(),
        "/",
        LoopLimits {
            interval: Duration::from_millis(5),
            ..LoopLimits::default()
        },
    );
    wait_until(T, "the request loop to reach web2", || {
        let s = requests.snapshot();
        if s.by_host.contains_key("web2") {
            Ok(())
        } else {
            Err(s.by_host)
        }
    });
    // slow requests in flight across every node (round robin puts at least one on web2):
    // web2's slot must stay in drain until they finish, and they must all succeed
    let fe = h.frontend_addr();
    let slow: Vec<_> = (0..6)
        .map(|_| std::thread::spawn(move || http_get(fe, "/sleep/1500")))
        .collect();
    wait_until(T, "a slow request in flight on web2", || {
        let row = h.slots("web").into_iter().find(|r| r.server() == slot);
        match row {
            Some(r) if r.get("scur") != "0" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    nodes[1].serf.leave();
    // freed: maint, no member, placeholder address
    wait_until(T, "web2's slot to be freed", || {
        let s = agent.try_slots()?;
        let row = s.iter().find(|s| s.slot == slot).cloned();
        match row {
            Some(r) if r.member.is_none() && r.state == "maint" && r.addr.is_none() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // the app goes away only now, as a real one would after its node left
    nodes[1].app.stop();
    let before = requests.snapshot().total();
    wait_until(T, "60 more requests after the app stopped", || {
        let n = requests.snapshot().total();
        if n >= before + 60 {
            Ok(())
        } else {
            Err(n)
        }
    });
    let stats = requests.stop();
    for t in slow {
        let r = t.join().unwrap();
        assert!(
            r.as_ref().is_ok_and(|r| r.status == 200),
            "a request in flight during the leave failed: {r:?}\nslot {slot}: {:?}\n{}\nHAProxy log:\n{}",
            watch.history(&slot),
            agent.decisions(),
            h.log()
                .lines()
                .filter(|l| l.contains(" 502 ") || l.contains("sleep"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    watch.wait_admin(&slot, "maint", Duration::from_secs(2));
    let states = watch.admin_states(&slot);
    assert!(
        states.ends_with(&["ready".into(), "drain".into(), "maint".into()]),
        "web2's slot went ready → drain → maint: {:?}\n{}",
        watch.history(&slot),
        agent.decisions()
    );
    assert_eq!(
        stats.failed, 0,
        "no request failed: {:?} (ok {}, by host {:?})",
        stats.failures, stats.ok, stats.by_host
    );
    agent.wait_serving(&["web1", "web3"], T);
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn a_killed_node_is_drained_at_once_then_put_in_maint() {
    let (h, mut nodes, agent) = cluster(4, 10, &[]);
    let pid = h.pid();
    agent.wait_serving(&names(&nodes), T);
    let slot = slot_of(&agent, "web3");
    let watch = SlotWatcher::start(&h.admin_socket(), "web");
    nodes[2].serf.kill();
    wait_until(T, "web3's slot in maint", || {
        let states = watch.admin_states(&slot);
        if states.last().map(String::as_str) == Some("maint") {
            Ok(())
        } else {
            Err(states)
        }
    });
    assert_eq!(
        watch.admin_states(&slot),
        vec!["ready", "drain", "maint"],
        "drained while suspected, then maint once failed: {:?}",
        watch.history(&slot)
    );
    // Usually the agent hears the serf nodes' `suspect` first (suspicion drain); with
    // Serf's local profile (2 retransmissions) it sometimes hears only the later `dead`,
    // and the failed member's grace drain does the same job. Either way: drain, then maint.
    let st = agent.status();
    eprintln!(
        "suspicion drains: {} (0 = the agent heard `dead` without `suspect`)",
        st["haproxy"]["suspicion_drains"]
    );
    assert_eq!(
        agent.member_statuses().get("web3").map(String::as_str),
        Some("failed")
    );
    agent.wait_serving(&["web1", "web2", "web4"], T);
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn twelve_members_for_ten_slots_queue_two_and_place_them_when_slots_free() {
    let (h, mut nodes, agent) = cluster(12, 10, &[]);
    let pid = h.pid();
    let status = wait_until(T, "10 serving and 2 queued", || {
        let st = agent.status();
        let queued = st["haproxy"]["backends"]["web"]["queued"].clone();
        let serving = agent.serving().len();
        if serving == 10 && queued.as_array().map(Vec::len) == Some(2) {
            Ok(st)
        } else {
            Err(format!("serving {serving}, queued {queued}"))
        }
    });
    let queued: Vec<String> =
        serde_json::from_value(status["haproxy"]["backends"]["web"]["queued"].clone()).unwrap();
    let metrics = agent.metrics();
    assert!(
        metrics.contains("haserf_queue_length{backend=\"web\"} 2"),
        "{metrics}"
    );
    // two placed members leave: the queued ones get their slots
    let leaving: Vec<usize> = (0..12)
        .filter(|i| !queued.contains(&nodes[*i].name().to_string()))
        .skip(1) // keep the seed
        .take(2)
        .collect();
    for i in &leaving {
        nodes[*i].serf.leave();
    }
    let expected: Vec<String> = (0..12)
        .filter(|i| !leaving.contains(i))
        .map(|i| nodes[i].name().to_string())
        .collect();
    let refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    let serving = agent.wait_serving(&refs, T);
    for q in &queued {
        assert!(serving.contains_key(q), "{q} was placed: {serving:?}");
    }
    assert_eq!(
        agent.status()["haproxy"]["backends"]["web"]["queued"],
        serde_json::json!([])
    );
    drop(nodes.drain(..));
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn a_member_with_another_role_gets_no_slot() {
    let (h, nodes, agent) = cluster(2, 10, &[]);
    let pid = h.pid();
    let db = WebNode::start_with("db1", Some(nodes[0].serf.bind_addr()), |o| {
        o.tag("role", "db")
    });
    // the agent knows db1, and has evaluated membership since (web nodes serve)
    wait_until(T, "the agent to see db1 alive", || {
        let m = agent.member_statuses();
        if m.get("db1").map(String::as_str) == Some("alive") {
            Ok(())
        } else {
            Err(m)
        }
    });
    let before = agent.status()["haproxy"]["evaluations"].as_u64().unwrap();
    wait_until(T, "another evaluation after db1 joined", || {
        let n = agent.status()["haproxy"]["evaluations"].as_u64().unwrap();
        if n > before {
            Ok(())
        } else {
            Err(n)
        }
    });
    agent.wait_serving(&["web1", "web2"], T);
    assert!(!agent.placed().contains_key("db1"), "{:?}", agent.placed());
    let db_addr = db.app_addr().ip().to_string();
    assert!(
        h.slots("web")
            .iter()
            .all(|r| !r.addr().starts_with(&db_addr)),
        "no slot points at db1"
    );
    assert!(!hosts_seen(h.frontend_addr(), 20).contains("db1"));
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn a_member_outside_the_allowed_networks_gets_no_slot() {
    let h = Haproxy::start_slots("web", 10);
    let nodes = web_nodes(3, "web");
    let allow: Vec<String> = nodes[..2]
        .iter()
        .map(|n| format!("--allow-cidr={}/32", n.app_addr().ip()))
        .collect();
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web")
            .join(nodes[0].serf.bind_addr())
            .args(&allow),
    );
    let pid = h.pid();
    let refused = wait_until(T, "web3 refused", || {
        let st = agent.status();
        let r = st["haproxy"]["refused"].clone();
        if r.as_array().is_some_and(|a| !a.is_empty()) {
            Ok(r)
        } else {
            Err(st)
        }
    });
    assert_eq!(refused[0]["member"], "web3", "{refused}");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("outside --allow-cidr"),
        "{refused}"
    );
    agent.wait_serving(&["web1", "web2"], T);
    assert!(!agent.placed().contains_key("web3"));
    assert!(!hosts_seen(h.frontend_addr(), 20).contains("web3"));
    assert!(
        agent.log().contains("member refused a slot"),
        "the refusal is logged"
    );
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}

#[test]
fn the_partition_guard_keeps_three_of_four_failed_members_in_rotation_then_releases_them() {
    let (h, mut nodes, agent) = cluster(4, 10, &["--partition-guard-hold=8s"]);
    let pid = h.pid();
    let before = agent.wait_serving(&names(&nodes), T);
    let watch = SlotWatcher::start(&h.admin_socket(), "web");
    // A partition as the load balancer sees it: gossip from three of four nodes stops at
    // once (their serf agents die) while their apps still answer.
    for n in &mut nodes[1..] {
        n.serf.kill();
    }
    let killed_at = Instant::now();
    let held = wait_until(T, "the guard to hold web2..web4", || {
        let st = agent.status();
        let held = st["haproxy"]["backends"]["web"]["guard_holding"].clone();
        if held == serde_json::json!(["web2", "web3", "web4"]) {
            Ok(Instant::now())
        } else {
            Err(format!(
                "{}\n{}",
                st["haproxy"]["backends"]["web"],
                agent.decisions()
            ))
        }
    });
    // The first one suspected may have been drained before the guard saw the others go;
    // under the hold all three are back in rotation (their checks pass) with their slots.
    let all_ready = |slots: &[support::agent::Slot]| {
        ["web2", "web3", "web4"].iter().all(|n| {
            slots.iter().any(|s| {
                s.slot == before[*n] && s.member.as_deref() == Some(*n) && s.state == "ready"
            })
        })
    };
    wait_until(Duration::from_secs(3), "the held members ready", || {
        let s = agent.try_slots()?;
        if all_ready(&s) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    assert_eq!(
        hosts_seen(h.frontend_addr(), 40),
        ["web1", "web2", "web3", "web4"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "traffic still reaches the held members"
    );
    let mut samples = 0;
    loop {
        let st1 = agent.status()["haproxy"]["backends"]["web"]["guard_holding"].clone();
        let slots = agent.try_slots().unwrap();
        let st2 = agent.status()["haproxy"]["backends"]["web"]["guard_holding"].clone();
        if st1.as_array().is_none_or(Vec::is_empty) || st2.as_array().is_none_or(Vec::is_empty) {
            break;
        }
        samples += 1;
        assert!(
            all_ready(&slots),
            "held members stay in rotation: {slots:?}"
        );
        assert!(killed_at.elapsed() < T, "the hold never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        samples >= 3,
        "all three were held a while ({samples} samples)"
    );
    // released after the hold time: out of rotation once failed (maint, slot freed)
    wait_until(Duration::from_secs(40), "the three slots in maint", || {
        let s = agent.try_slots()?;
        let all = ["web2", "web3", "web4"].iter().all(|n| {
            s.iter()
                .any(|s| s.slot == before[*n] && s.state == "maint" && s.member.is_none())
        });
        if all {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    for n in ["web2", "web3", "web4"] {
        watch.wait_admin(&before[n], "maint", Duration::from_secs(2));
        let states = watch.admin_states(&before[n]);
        assert_eq!(
            states.last().map(String::as_str),
            Some("maint"),
            "{n}: {:?}",
            watch.history(&before[n])
        );
        assert!(
            !states[..states.len() - 1].contains(&"maint".to_string()),
            "{n} kept its slot until the release: {:?}",
            watch.history(&before[n])
        );
    }
    // the guard's own record: one alert, raised at the hold, resolved at the release
    let st = agent.status();
    let alerts = st["haproxy"]["alerts"].as_array().unwrap().clone();
    let alert = alerts
        .iter()
        .find(|a| a["kind"] == "partition_guard")
        .unwrap_or_else(|| panic!("{alerts:?}"));
    assert!(
        alert["message"].as_str().unwrap().starts_with("holding"),
        "{alert}"
    );
    assert_eq!(alert["active"], false, "{alert}");
    assert!(
        alert["resolution"]
            .as_str()
            .unwrap()
            .ends_with("web2, web3, web4"),
        "{alert}"
    );
    let time = |key: &str| {
        humantime::parse_rfc3339(alert[key].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{key} is not RFC 3339 ({e}): {alert}"))
    };
    let held_for = time("resolved_at").duration_since(time("at")).unwrap();
    eprintln!(
        "hold began {:?} after the kill and lasted {held_for:?}",
        held.duration_since(killed_at)
    );
    assert!(
        held_for >= Duration::from_secs(8) && held_for < Duration::from_millis(9500),
        "held for {held_for:?} with --partition-guard-hold=8s"
    );
    assert_eq!(
        st["haproxy"]["backends"]["web"]["guard_holding"],
        serde_json::json!([])
    );
    agent.wait_serving(&["web1"], T);
    assert_eq!(h.pid(), pid, "HAProxy was never reloaded");
}
