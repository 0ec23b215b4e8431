//! Discovery from real captures of every tested HAProxy version (2.6, 3.0, 3.2): slots,
//! admin state, checks, template port, verify view.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use haserf::control::model::SlotState;
use haserf::haproxy::{AdminState, Info, Snapshot};
use haserf::slots::discovery::{discover, slot_views, template_port};
use support::captures::{haproxy_captures, Captures};

const PH: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn every_versions_mixed_capture_gives_each_slot_its_admin_state_address_and_check() {
    for c in haproxy_captures() {
        mixed_capture_gives_each_slot_its_admin_state_address_and_check(&c);
    }
}

fn mixed_capture_gives_each_slot_its_admin_state_address_and_check(c: &Captures) {
    let v = &c.version;
    let snap = Snapshot {
        info: c.read("03-show-info.txt"),
        stat: c.read("20-show-stat-mixed-states.csv"),
        servers_state: c.read("21-show-servers-state-mixed.txt"),
    };
    let obs = discover(&snap).unwrap_or_else(|e| panic!("{v}: {e}"));
    assert_eq!(obs.pid, Info::parse(&snap.info).unwrap().pid, "{v}");
    let web = &obs.backends["web"];
    assert_eq!(web.len(), 10, "{v}");
    assert_eq!(
        web.iter().map(|s| s.id).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>(),
        "{v}"
    );
    let s = |n: &str| web.iter().find(|s| s.name == n).unwrap();
    assert_eq!(s("web1").admin, AdminState::Ready, "{v}");
    assert!(s("web1").check_verified(), "{v}");
    assert_eq!(
        s("web1").addr_port().as_deref(),
        Some("127.0.0.2:3000"),
        "{v}"
    );
    assert_eq!(s("web2").admin, AdminState::Drain, "{v}");
    assert!(s("web2").check_verified(), "{v}");
    assert_eq!(s("web3").admin, AdminState::Maint, "{v}");
    assert_eq!(s("web4").admin, AdminState::Ready, "{v}");
    assert!(!s("web4").check_verified(), "{v}: DOWN with L4CON");
    assert_eq!(
        s("web6").admin,
        AdminState::Drain,
        "{v}: drained and DOWN: the drain bit"
    );
    assert!(s("web5").is_empty_slot(PH), "{v}");
    assert!(
        !s("web3").is_empty_slot(PH),
        "{v}: maint but still pointing at a member"
    );
    assert_eq!(template_port(web, PH), Some(9), "{v}");
    // the verify view: free slots have no address
    let views = slot_views(&obs, &["web".to_string()], PH);
    assert_eq!(views.len(), 10, "{v}");
    let v5 = views.iter().find(|v| v.slot == "web5").unwrap();
    assert_eq!(
        (v5.addr.as_deref(), v5.state),
        (None, SlotState::Maint),
        "{v}"
    );
    let v2 = views.iter().find(|v| v.slot == "web2").unwrap();
    assert_eq!(
        (v2.addr.as_deref(), v2.state, v2.haproxy_status.as_str()),
        (Some("127.0.0.3:3000"), SlotState::Drain, "DRAIN"),
        "{v}"
    );
}

#[test]
fn every_versions_initial_capture_shows_every_slot_free_and_the_resolution_slots_in_maint() {
    for c in haproxy_captures() {
        let v = &c.version;
        let snap = Snapshot {
            info: c.read("03-show-info.txt"),
            stat: c.read("01-show-stat-initial.csv"),
            servers_state: c.read("02-show-servers-state-initial.txt"),
        };
        let obs = discover(&snap).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(obs.backends["web"].len(), 10, "{v}");
        assert!(
            obs.backends["web"]
                .iter()
                .all(|s| s.is_empty_slot(PH) && s.has_check),
            "{v}"
        );
        assert!(
            obs.backends["api"]
                .iter()
                .all(|s| s.admin == AdminState::Maint && s.addr.is_none()),
            "{v}"
        );
        // static servers are never slots: their backends are reported, not managed
        assert!(!obs.backends.contains_key("static"), "{v}");
        assert_eq!(obs.static_servers["static"], ["st1"], "{v}");
        assert_eq!(obs.static_servers["web404"], ["s404"], "{v}");
        assert!(obs.backend_problem("web").is_none(), "{v}");
        let p = obs.backend_problem("static").unwrap();
        assert!(
            p.contains("no server-template") && p.contains("st1"),
            "{v}: {p}"
        );
        let p = obs.backend_problem("api").unwrap();
        assert!(p.contains("FQDN placeholder"), "{v}: {p}");
        let p = obs.backend_problem("nope").unwrap();
        assert!(p.contains("does not exist"), "{v}: {p}");
    }
}
