//! A member heard `failed` and then `left` (stock serf: a node whose serf process died, then
//! `serf force-leave`; a graceful leave can reach a node in the same order) keeps its slot
//! in drain while a session is open, until it ends or `--drain-timeout` passes, whichever
//! first; it leaves rotation (drain) as soon as it is suspected. Real serf, real HAProxy.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::agent::{web_nodes, HaserfAgent, HaserfOptions, SlotWatcher};
use support::haproxy::parse_show_stat;
use support::{runtime_command, wait_until, Haproxy, HttpClient};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_member_heard_failed_then_left_keeps_draining_while_its_session_is_open() {
    let h = Haproxy::start_slots("web", 5);
    let mut nodes = web_nodes(3, "fl-web");
    let agent = HaserfAgent::start(
        HaserfOptions::manager("fl-lb1", &h.admin_socket(), "web")
            .join(nodes[0].serf.bind_addr())
            .args(&["--drain-timeout", "40s"]),
    );
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    agent.wait_serving(&names, T);
    let slot = agent.placed()["fl-web2"].clone();
    let watch = SlotWatcher::start(&h.admin_socket(), "web");
    let t0 = Instant::now(); // ~ the watcher's own clock

    // slow requests across every node; round robin puts at least one on fl-web2
    let fe = h.frontend_addr();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpClient::new(fe);
                c.keep_alive = false;
                c.timeout = Duration::from_secs(40);
                c.get("/sleep/20000")
            })
        })
        .collect();
    let admin = h.admin_socket();
    let scur_of = move |slot: &str| -> u64 {
        runtime_command(&admin, "show stat")
            .ok()
            .and_then(|csv| {
                parse_show_stat(&csv)
                    .into_iter()
                    .find(|r| r.proxy() == "web" && r.server() == slot)
                    .and_then(|r| r.get("scur").parse().ok())
            })
            .unwrap_or(0)
    };
    wait_until(T, "a slow request in flight on fl-web2", || {
        if scur_of(&slot) > 0 {
            Ok(())
        } else {
            Err(watch.history(&slot))
        }
    });
    // when the slot's last session ends (seconds since t0), polled every 20 ms
    let ended: Arc<Mutex<Option<f64>>> = Arc::default();
    let tracker = {
        let (ended, slot, scur_of) = (ended.clone(), slot.clone(), scur_of.clone());
        std::thread::spawn(move || {
            while t0.elapsed() < Duration::from_secs(60) {
                if scur_of(&slot) == 0 {
                    *ended.lock().unwrap() = Some(t0.elapsed().as_secs_f64());
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
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
    let failed_at = t0.elapsed().as_secs_f64();
    // ... and then left
    let (ok, out, err) = nodes[0].serf.cli("force-leave", &["fl-web2"]);
    assert!(ok, "serf force-leave: {out}{err}");
    wait_until(T, "the agent to hear fl-web2 left", || {
        match agent.member_statuses().get("fl-web2").map(String::as_str) {
            Some("left") | None => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    for t in slow {
        let r = t.join().unwrap();
        assert!(
            r.as_ref().is_ok_and(|r| r.status == 200),
            "a request in flight failed: {r:?}"
        );
    }
    tracker.join().unwrap();
    let ended = ended.lock().unwrap().expect("the session on fl-web2 ended");
    assert!(
        ended > failed_at + 4.0,
        "the session ended {ended:.1}s, too soon after `failed` ({failed_at:.1}s) to tell"
    );
    watch.wait_admin(&slot, "maint", Duration::from_secs(5));
    let history = watch.history(&slot);
    let states = watch.admin_states(&slot);
    assert_eq!(states, vec!["ready", "drain", "maint"], "{history:?}");
    // maint only once the session ended (not at failed + the 3 s grace), and soon after
    let maint_at = history.iter().find(|o| o.admin == "maint").unwrap().at;
    assert!(
        maint_at >= ended - 0.2 && maint_at < ended + 3.0,
        "the slot went maint at {maint_at:.2}s; failed heard at {failed_at:.2}s, the session \
         ended at {ended:.2}s: {history:?}\n{}",
        agent.decisions()
    );
    agent.wait_serving(&["fl-web1", "fl-web3"], T);
    eprintln!(
        "drained {drained_after:?} after the kill; failed at {failed_at:.1}s, session ended \
         {ended:.1}s, maint {maint_at:.1}s"
    );
}
