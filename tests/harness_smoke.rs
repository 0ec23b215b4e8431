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
