//! Smoke tests of the test harness itself (tests/support): real HAProxy, real serf peers,
//! HTTP backends, network-namespace hosts.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn haproxy_lists_the_empty_slots_of_a_server_template_backend() {
    let h = Haproxy::start_slots("web", 5);
    let slots = h.slots("web");
    let names: Vec<&str> = slots.iter().map(|r| r.server()).collect();
    assert_eq!(names, ["web1", "web2", "web3", "web4", "web5"]);
    for r in &slots {
        assert_eq!(
            r.status(),
            "MAINT",
            "slot {} should start empty",
            r.server()
        );
        assert_eq!(r.addr(), "127.0.0.1:9");
    }
}

#[test]
fn haproxy_restart_gives_a_new_pid_and_forgets_runtime_changes() {
    let mut h = Haproxy::start_slots("web", 2);
    let before = h.pid();
    let reply = h.cmd("set server web/web1 addr 127.0.0.2 port 3000");
    assert!(reply.starts_with("IP changed from"), "reply: {reply:?}");
    h.restart();
    assert_ne!(h.pid(), before);
    let web1 = h
        .slots("web")
        .into_iter()
        .find(|r| r.server() == "web1")
        .unwrap();
    assert_eq!(web1.addr(), "127.0.0.1:9");
}

#[test]
fn the_user_level_socket_refuses_changes() {
    let h = Haproxy::start_slots("web", 1);
    assert_eq!(h.cmd_user("show cli level").trim(), "user");
    let reply = h.cmd_user("set server web/web1 state ready");
    assert!(reply.contains("Permission denied"), "reply: {reply:?}");
}

#[test]
fn traffic_through_haproxy_reaches_the_backend_put_into_a_slot() {
    let h = Haproxy::start_slots("web", 3);
    let b = HttpBackend::start("alpha");
    let reply = h.cmd(&format!(
        "set server web/web2 addr {} port {}; set server web/web2 state ready",
        b.addr().ip(),
        b.addr().port()
    ));
    assert!(reply.starts_with("IP changed from"), "reply: {reply:?}");
    h.wait_slot_status("web", "web2", "UP", Duration::from_secs(10));
    let resp = http_get(h.frontend_addr(), "/").expect("GET through HAProxy");
    assert_eq!(resp.status, 200, "body: {}", resp.body);
    assert_eq!(resp.backend_host().as_deref(), Some("alpha"));

    let looped = RequestLoop::start(
        h.frontend_addr(),
        "/",
        LoopLimits {
            max_requests: 20,
            interval: Duration::from_millis(5),
            keep_alive: true,
            ..LoopLimits::default()
        },
    );
    wait_until(Duration::from_secs(10), "20 requests", || {
        if looped.is_finished() {
            Ok(())
        } else {
            Err(looped.snapshot())
        }
    });
    let stats = looped.stop();
    assert_eq!((stats.ok, stats.failed), (20, 0), "{stats:?}");
    assert_eq!(stats.by_host.get("alpha"), Some(&20));

    let stats_page = http_get(h.stats_addr(), "/stats;csv").expect("stats page");
    assert_eq!(stats_page.status, 200);
    assert!(stats_page.body.contains("web,web2,"), "{}", stats_page.body);
}

#[test]
fn allocated_addresses_are_distinct_and_inside_the_process_range() {
    let r = test_range();
    assert!((100..=250).contains(&r));
    let a = alloc_ip();
    let b = alloc_ip();
    assert_ne!(a, b);
    assert_eq!(a.octets()[..2], [127, r]);
}

#[test]
fn a_wait_that_never_holds_reports_what_it_last_saw() {
    let err = try_wait_until(Duration::from_millis(120), "the impossible", || {
        Err::<(), _>("still 41")
    })
    .unwrap_err();
    assert!(
        err.contains("the impossible") && err.contains("still 41"),
        "{err}"
    );
}

#[test]
fn three_serf_peers_converge_and_a_graceful_leave_shows_as_left() {
    let mut c = SerfCluster::start(3, "n", |i, o| {
        o.tag("role", "web").tag("idx", &i.to_string())
    });
    let members = c.peers[0].members();
    assert_eq!(members.len(), 3, "{members:?}");
    let n2 = members.iter().find(|m| m.name == "n2").unwrap();
    assert_eq!(n2.tags.get("idx").map(String::as_str), Some("1"));
    assert_eq!(n2.addr, c.peers[1].bind_addr().to_string());

    c.peer("n3").leave();
    c.peers[0].wait_status("n3", "left", Duration::from_secs(10));
    c.peers[1].wait_status("n3", "left", Duration::from_secs(10));
}

#[test]
fn a_killed_serf_peer_is_marked_failed_and_rejoins_after_restart() {
    let mut c = SerfCluster::start(3, "k", |_, o| o);
    c.peer("k2").kill();
    c.peers[0].wait_status("k2", "failed", Duration::from_secs(15));
    c.peers[0].wait_log("EventMemberFailed: k2", Duration::from_secs(5));
    c.peer("k2").restart(None);
    c.wait_converged(Duration::from_secs(15));
}

#[test]
fn serf_queries_events_and_tags_reach_the_peers() {
    let key = support::serf::serf_keygen();
    let c = SerfCluster::start(2, "q", |_, o| {
        o.encrypt(&key)
            .handler("query:greet=echo hello from $SERF_SELF_NAME")
    });
    let r = c.peers[0].query("greet", "", Duration::from_secs(2), &[]);
    assert_eq!(
        r.responses.get("q2").map(|s| s.trim()),
        Some("hello from q2"),
        "{r:?}"
    );
    c.peers[1].tags_set(&[("role", "db")], &[]);
    wait_until(Duration::from_secs(10), "q1 to see q2's new tag", || {
        let m = c.peers[0].members();
        let q2 = m.iter().find(|m| m.name == "q2").cloned();
        match q2 {
            Some(q2) if q2.tags.get("role").map(String::as_str) == Some("db") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    c.peers[0].event("deploy", "v1");
    c.peers[1].wait_log("user-event: deploy", Duration::from_secs(10));
}

#[test]
fn a_namespace_host_reaches_another_until_its_link_is_cut() {
    let lab = Lab::new();
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    let _web = b.http_backend("bee", 8080);
    let url = format!("http://{}:8080/", b.ip());
    let resp = wait_until(Duration::from_secs(5), "a to reach b over HTTP", || {
        a.http_get(&url).map_err(|e| e.to_string())
    });
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("\"host\":\"bee\""), "{}", resp.body);
    assert!(a.tcp_connects(b.ip(), 8080));
    let dir = tempfile::tempdir().unwrap();
    let mut lp = a.request_loop(
        &url,
        LoopLimits {
            max_requests: 5,
            interval: Duration::from_millis(10),
            ..LoopLimits::default()
        },
        dir.path(),
    );
    wait_until(Duration::from_secs(10), "5 looped requests", || {
        if lp.is_finished() {
            Ok(())
        } else {
            Err(lp.snapshot())
        }
    });
    let stats = lp.stop();
    assert_eq!((stats.ok, stats.failed), (5, 0), "{stats:?}");
    assert_eq!(stats.by_host.get("bee"), Some(&5));

    a.cut_link();
    assert!(
        !a.tcp_connects(b.ip(), 8080),
        "a still reaches b with its link cut"
    );
    assert!(a.http_get(&url).is_err());

    a.restore_link();
    wait_until(Duration::from_secs(5), "a to reach b again", || {
        if a.tcp_connects(b.ip(), 8080) {
            Ok(())
        } else {
            Err("no connection")
        }
    });
}

#[test]
fn serf_peers_in_namespace_hosts_see_a_cut_host_fail() {
    let lab = Lab::new();
    let hosts: Vec<NsHost> = (1..=3).map(|i| lab.add_host(&format!("s{i}"))).collect();
    let mut peers: Vec<SerfPeer> = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let mut o = SerfOptions::new(&format!("s{}", i + 1));
        o.ip = Some(h.ip());
        o.netns = Some(h.netns().to_string());
        if let Some(seed) = peers.first() {
            o = o.join(seed.bind_addr());
        }
        peers.push(SerfPeer::start(o));
    }
    peers[0].wait_status("s3", "alive", Duration::from_secs(10));
    hosts[2].cut_link();
    peers[0].wait_status("s3", "failed", Duration::from_secs(20));
}

#[test]
fn haproxy_reload_in_master_worker_mode_gives_a_new_worker_pid() {
    let ip = alloc_ip();
    let fe = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let st = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let mut h = Haproxy::start(HaproxyConfig::slots("web", 2, fe, st).master_worker());
    let before = h.pid();
    h.cmd("set server web/web1 addr 127.0.0.2 port 3000");
    h.reload();
    assert_ne!(h.pid(), before);
    let web1 = h
        .slots("web")
        .into_iter()
        .find(|r| r.server() == "web1")
        .unwrap();
    assert_eq!(web1.addr(), "127.0.0.1:9");
}
