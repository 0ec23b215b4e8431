//! Discovery from real 2.6 captures: slots, admin state, checks, template port, verify view.

use std::net::{IpAddr, Ipv4Addr};

use haserf::control::model::SlotState;
use haserf::haproxy::{AdminState, Snapshot};
use haserf::slots::discovery::{discover, slot_views, template_port};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/haproxy/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const PH: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn the_mixed_capture_gives_each_slot_its_admin_state_address_and_check() {
    let snap = Snapshot {
        info: fixture("03-show-info.txt"),
        stat: fixture("20-show-stat-mixed-states.csv"),
        servers_state: fixture("21-show-servers-state-mixed.txt"),
    };
    let obs = discover(&snap).unwrap();
    assert_eq!(obs.pid, 6866);
    let web = &obs.backends["web"];
    assert_eq!(web.len(), 10);
    assert_eq!(
        web.iter().map(|s| s.id).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    let s = |n: &str| web.iter().find(|s| s.name == n).unwrap();
    assert_eq!(s("web1").admin, AdminState::Ready);
    assert!(s("web1").check_verified());
    assert_eq!(s("web1").addr_port().as_deref(), Some("127.0.0.2:3000"));
    assert_eq!(s("web2").admin, AdminState::Drain);
    assert!(s("web2").check_verified());
    assert_eq!(s("web3").admin, AdminState::Maint);
    assert_eq!(s("web4").admin, AdminState::Ready);
    assert!(!s("web4").check_verified(), "DOWN with L4CON");
    assert_eq!(
        s("web6").admin,
        AdminState::Drain,
        "drained and DOWN: the drain bit"
    );
    assert!(s("web5").is_empty_slot(PH));
    assert!(
        !s("web3").is_empty_slot(PH),
        "maint but still pointing at a member"
    );
    assert_eq!(template_port(web, PH), Some(9));
    // the verify view: free slots have no address
    let views = slot_views(&obs, &["web".to_string()], PH);
    assert_eq!(views.len(), 10);
    let v5 = views.iter().find(|v| v.slot == "web5").unwrap();
    assert_eq!((v5.addr.as_deref(), v5.state), (None, SlotState::Maint));
    let v2 = views.iter().find(|v| v.slot == "web2").unwrap();
    assert_eq!(
        (v2.addr.as_deref(), v2.state, v2.haproxy_status.as_str()),
        (Some("127.0.0.3:3000"), SlotState::Drain, "DRAIN")
    );
}

#[test]
fn the_initial_capture_shows_every_slot_free_and_the_resolution_slots_in_maint() {
    let snap = Snapshot {
        info: fixture("03-show-info.txt"),
        stat: fixture("01-show-stat-initial.csv"),
        servers_state: fixture("02-show-servers-state-initial.txt"),
    };
    let obs = discover(&snap).unwrap();
    assert!(obs.backends["web"]
        .iter()
        .all(|s| s.is_empty_slot(PH) && s.has_check));
    assert!(obs.backends["api"]
        .iter()
        .all(|s| s.admin == AdminState::Maint && s.addr.is_none()));
    assert!(obs.backends["static"].iter().all(|s| !s.has_check));
}
