//! A member heard `failed` and then `left` (stock serf: a node whose serf process died, then
//! `serf force-leave`; a graceful leave can reach a node in the same order) keeps its slot
//! in drain while a session is open, until it ends or `--drain-timeout` passes, whichever
//! first; it leaves rotation (drain) as soon as it is suspected. Real serf, real HAProxy.

mod support;

use std::time::{Duration, Instant};

use support::agent::{web_nodes, HaserfAgent, HaserfOptions, SlotWatcher};
use support::{wait_until, Haproxy, HttpClient};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_member_heard_failed_then_left_keeps_draining_while_its_session_is_open() {
    let h = Haproxy::start_slots("web", 5);
    let mut nodes = web_nodes(3, "fl-web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("fl-lb1", &h.admin_socket(), "web")
            .join(nodes[0].serf.bind_addr())
            .args(&["--drain-timeout", "25s"]),
    );
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    agent.wait_serving(&names, T);
    let slot = agent.placed()["fl-web2"].clone();
    let watch = SlotWatcher::start(&h.admin_socket(), "web");

    // slow requests across every node; round robin puts at least one on fl-web2
    let fe = h.frontend_addr();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpClient::new(fe);
                c.keep_alive = false;
                c.timeout = Duration::from_secs(30);
                c.get("/sleep/15000")
            })
        })
        .collect();
    let scur = |h: &Haproxy| -> u64 {
        h.slots("web")
            .into_iter()
            .find(|r| r.server() == slot)
            .and_then(|r| r.get("scur").parse().ok())
            .unwrap_or(0)
    };
    wait_until(T, "a slow request in flight on fl-web2", || {
        if scur(&h) > 0 {
            Ok(())
        } else {
            Err(watch.history(&slot))
        }
    });
    let killed_at = Instant::now();
    // fl-web2's serf dies (its app keeps serving the open request)
    nodes[1].serf.kill();
    // out of rotation at once: drained on suspicion (or within the failed grace)
    watch.wait_admin(&slot, "drain", T);
    let drained_after = killed_at.elapsed();
    wait_until(T, "the agent to hear fl-web2 failed", || {
        match agent.member_statuses().get("fl-web2").map(String::as_str) {
            Some("failed") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let failed_at = Instant::now();
    // ... and then left
    let (ok, out, err) = nodes[0].serf.cli("force-leave", &["fl-web2"]);
    assert!(ok, "serf force-leave: {out}{err}");
    wait_until(T, "the agent to hear fl-web2 left", || {
        match agent.member_statuses().get("fl-web2").map(String::as_str) {
            Some("left") | None => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // past the failed grace (3 s) the slot is still draining while the session is open
    while failed_at.elapsed() < Duration::from_secs(4) && scur(&h) > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let open = scur(&h);
    let states = watch.admin_states(&slot);
    assert_eq!(
        states,
        vec!["ready", "drain"],
        "the slot must stay in drain while a session is open: {:?}\n{}",
        watch.history(&slot),
        agent.decisions()
    );
    assert!(
        open > 0,
        "the slow request ended too early for this test ({:?} after the kill)",
        killed_at.elapsed()
    );
    // the session ends by itself (well before --drain-timeout): then maint, freed
    for t in slow {
        let r = t.join().unwrap();
        assert!(
            r.as_ref().is_ok_and(|r| r.status == 200),
            "a request in flight failed: {r:?}"
        );
    }
    watch.wait_admin(&slot, "maint", Duration::from_secs(5));
    assert!(
        killed_at.elapsed() < Duration::from_secs(25),
        "freed when the session ended, not at the drain deadline"
    );
    assert_eq!(watch.admin_states(&slot), vec!["ready", "drain", "maint"]);
    agent.wait_serving(&["fl-web1", "fl-web3"], T);
    eprintln!("drained {drained_after:?} after the kill");
}
