//! Two load balancers live: two HAProxy + `haserf agent` pairs that never talk to each other
//! about slots, and stock `serf agent` web nodes. Both show the same slot table (member →
//! slot) through joins, a graceful leave, a crash and a restart of one agent (rendezvous
//! hashing on member names, and an agent restart adopting HAProxy's own state).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::agent::{web_nodes, HaserfAgent, HaserfOptions, WebNode};
use support::{wait_until, Haproxy};

const T: Duration = Duration::from_secs(20);

/// Waits until both agents serve exactly `members` and place them in the same slots;
/// returns that table.
fn same_table(a: &HaserfAgent, b: &HaserfAgent, members: &[&str]) -> BTreeMap<String, String> {
    let ta = a.wait_serving(members, T);
    let tb = b.wait_serving(members, T);
    wait_until(T, "both load balancers to show the same slot table", || {
        let (pa, pb) = (a.placed(), b.placed());
        let want: Vec<&str> = {
            let mut m = members.to_vec();
            m.sort();
            m
        };
        if pa == pb && pa.keys().map(String::as_str).collect::<Vec<_>>() == want {
            Ok(pa)
        } else {
            Err(format!("lb1 {pa:?}\nlb2 {pb:?} (serving: {ta:?} / {tb:?})"))
        }
    })
}

#[test]
fn two_load_balancers_keep_identical_slot_tables_through_joins_leaves_a_crash_and_an_agent_restart()
{
    let h1 = Haproxy::start_slots("web", 8);
    let h2 = Haproxy::start_slots("web", 8);
    let mut nodes = web_nodes(3, "tl-web");
    let seed = nodes[0].serf.bind_addr();
    let a1 =
        HaserfAgent::start(HaserfOptions::manager("tl-lb1", &h1.admin_socket(), "web").join(seed));
    let mut a2 =
        HaserfAgent::start(HaserfOptions::manager("tl-lb2", &h2.admin_socket(), "web").join(seed));
    let t0 = same_table(&a1, &a2, &["tl-web1", "tl-web2", "tl-web3"]);

    // joins: two more stock serf nodes
    nodes.push(WebNode::start("tl-web4", Some(seed)));
    nodes.push(WebNode::start("tl-web5", Some(seed)));
    let t1 = same_table(
        &a1,
        &a2,
        &["tl-web1", "tl-web2", "tl-web3", "tl-web4", "tl-web5"],
    );
    for (m, s) in &t0 {
        assert_eq!(t1.get(m), Some(s), "{m} moved on a join");
    }

    // a graceful leave
    nodes[1].serf.leave();
    let t2 = same_table(&a1, &a2, &["tl-web1", "tl-web3", "tl-web4", "tl-web5"]);

    // a crash
    nodes[2].serf.kill();
    let t3 = same_table(&a1, &a2, &["tl-web1", "tl-web4", "tl-web5"]);
    for (m, s) in &t3 {
        assert_eq!(
            t2.get(m),
            Some(s),
            "{m} moved when another member left or crashed"
        );
    }

    // one agent restarts: it adopts HAProxy's slots, and a member joining meanwhile lands
    // in the same slot on both
    a2.kill();
    nodes.push(WebNode::start("tl-web6", Some(seed)));
    a1.wait_serving(&["tl-web1", "tl-web4", "tl-web5", "tl-web6"], T);
    a2.restart();
    let t4 = same_table(&a1, &a2, &["tl-web1", "tl-web4", "tl-web5", "tl-web6"]);
    for (m, s) in &t3 {
        assert_eq!(t4.get(m), Some(s), "{m} moved across the agent restart");
    }
    // HAProxy agrees with both agents: every member's address is in the same slot on both
    let addr_by_slot = |h: &Haproxy| -> BTreeMap<String, String> {
        h.slots("web")
            .into_iter()
            .filter(|r| !r.status().starts_with("MAINT"))
            .map(|r| (r.server().to_string(), r.addr().to_string()))
            .collect()
    };
    wait_until(
        T,
        "both HAProxys to hold the same addresses in the same slots",
        || {
            let (x, y) = (addr_by_slot(&h1), addr_by_slot(&h2));
            if x == y && x.len() == 4 {
                Ok(())
            } else {
                Err(format!("{x:?}\n{y:?}"))
            }
        },
    );
}
