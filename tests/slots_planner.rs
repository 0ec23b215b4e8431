//! Planner and assignment book: property tests against a model of HAProxy 2.6's slot
//! behaviour (state ready on a checked slot is UP at once; drain waits for the check).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use haserf::haproxy::{AdminState, Command, Health, ServerStatus};
use haserf::slots::book::{Book, DesiredMember, Want};
use haserf::slots::planner::{plan, plan_slot, satisfied, PlanContext, Target};
use haserf::slots::ObservedSlot;
use proptest::prelude::*;

const PH: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn ctx() -> PlanContext {
    PlanContext {
        placeholder: PH,
        template_port: 9,
    }
}

fn empty_slot(i: usize, has_check: bool) -> ObservedSlot {
    ObservedSlot {
        name: format!("web{i}"),
        id: i as u32,
        addr: Some(PH),
        port: Some(9),
        admin: AdminState::Maint,
        status: ServerStatus::Maint,
        weight: 1,
        iweight: 1,
        scur: 0,
        has_check,
        check_status: None,
    }
}

/// HAProxy 2.6 as the reference describes it.
fn apply(o: &mut ObservedSlot, c: &Command) {
    match c {
        Command::SetAddr { addr, port, .. } => {
            o.addr = Some(*addr);
            if let Some(p) = port {
                o.port = Some(*p);
            }
        }
        Command::SetState { state, .. } => {
            let from_maint = o.admin == AdminState::Maint;
            o.admin = *state;
            o.status = match (state, o.has_check) {
                (AdminState::Maint, _) => {
                    o.check_status = None;
                    ServerStatus::Maint
                }
                (_, false) => ServerStatus::NoCheck,
                (AdminState::Drain, true) if from_maint => {
                    o.check_status = Some("INI".into());
                    ServerStatus::Transition {
                        health: Health::Drain,
                        step: 1,
                        of: 2,
                    }
                }
                (AdminState::Drain, true) => ServerStatus::Stable(Health::Drain),
                (AdminState::Ready, true) if from_maint => {
                    o.check_status = Some("INI".into());
                    ServerStatus::Transition {
                        health: Health::Up,
                        step: 1,
                        of: 2,
                    }
                }
                (AdminState::Ready, true) => match o.status {
                    ServerStatus::Stable(Health::Drain) => ServerStatus::Stable(Health::Up),
                    ref s => s.clone(),
                },
            };
        }
        Command::SetWeight { weight, .. } => o.weight = u32::from(*weight),
        Command::ShutdownSessions { .. } => o.scur = 0,
        Command::Show(_) => {}
    }
}

/// One health check passes.
fn check_passes(o: &mut ObservedSlot) {
    if o.admin != AdminState::Maint && o.has_check {
        o.check_status = Some("L7OK".into());
        o.status = ServerStatus::Stable(if o.admin == AdminState::Drain {
            Health::Drain
        } else {
            Health::Up
        });
    }
}

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just(PH),
        (1u8..4).prop_map(|d| IpAddr::V4(Ipv4Addr::new(10, 0, 0, d))),
    ]
}

fn arb_obs() -> impl Strategy<Value = ObservedSlot> {
    (
        arb_addr(),
        prop_oneof![Just(9u16), Just(8080u16)],
        prop_oneof![
            Just(AdminState::Maint),
            Just(AdminState::Drain),
            Just(AdminState::Ready)
        ],
        any::<bool>(),
        any::<bool>(),
        0u32..3,
        0u64..3,
    )
        .prop_map(|(addr, port, admin, has_check, verified, weight, scur)| {
            let status = match (admin, has_check, verified) {
                (AdminState::Maint, _, _) => ServerStatus::Maint,
                (_, false, _) => ServerStatus::NoCheck,
                (AdminState::Drain, true, true) => ServerStatus::Stable(Health::Drain),
                (AdminState::Ready, true, true) => ServerStatus::Stable(Health::Up),
                (AdminState::Drain, true, false) => ServerStatus::Transition {
                    health: Health::Drain,
                    step: 1,
                    of: 2,
                },
                (AdminState::Ready, true, false) => ServerStatus::Stable(Health::Down),
            };
            ObservedSlot {
                name: "web1".into(),
                id: 1,
                addr: Some(addr),
                port: Some(port),
                admin,
                check_status: (admin != AdminState::Maint && has_check)
                    .then(|| if verified { "L7OK" } else { "L4CON" }.to_string()),
                status,
                weight,
                iweight: 1,
                scur,
                has_check,
            }
        })
}

fn arb_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        (
            arb_addr(),
            prop_oneof![Just(9u16), Just(8080u16)],
            0u32..3,
            any::<bool>()
        )
            .prop_map(|(addr, port, weight, drain)| Target::Serve {
                addr,
                port,
                weight,
                drain,
                admitted: false,
            }),
        Just(Target::Empty),
        (arb_addr(), prop_oneof![Just(9u16), Just(8080u16)]).prop_map(|(addr, port)| {
            Target::Leave {
                addr,
                port,
                deadline_passed: true,
            }
        }),
    ]
}

proptest! {
    #[test]
    fn applying_the_planned_commands_reaches_the_desired_state(obs in arb_obs(), target in arb_target()) {
        let mut o = obs;
        // a Leave target ends as an empty slot
        let end = if matches!(target, Target::Leave { .. }) { Target::Empty } else { target.clone() };
        for _ in 0..4 {
            let (cmds, _) = plan_slot("web", &target, &o, &ctx());
            for c in &cmds { apply(&mut o, c); }
            check_passes(&mut o);
            if satisfied(&end, &o, &ctx()) { break; }
        }
        prop_assert!(satisfied(&end, &o, &ctx()), "{:?} not reached: {:?}", end, o);
    }

    #[test]
    fn a_checked_slot_never_gets_ready_before_a_check_passed(obs in arb_obs(), target in arb_target()) {
        let (cmds, _) = plan_slot("web", &target, &obs, &ctx());
        let mut o = obs.clone();
        for c in &cmds {
            if let Command::SetState { state: AdminState::Ready, .. } = c {
                prop_assert!(!o.has_check || (o.admin == AdminState::Drain && o.check_verified()),
                    "ready before the first check: {:?} -> {:?}", obs, cmds);
            }
            apply(&mut o, c);
        }
    }

    #[test]
    fn the_planner_never_touches_a_slot_that_needs_no_change(
        filled in proptest::collection::vec(any::<bool>(), 1..20),
        change in 0usize..20,
        new_addr in 1u8..200,
    ) {
        // slots already at their target: filled ones serve 10.1.0.i:8080 (checked, UP),
        // the others are empty; one slot (if in range) gets a new member
        let mut observed = Vec::new();
        let mut targets = Vec::new();
        for (i, f) in filled.iter().enumerate() {
            let mut o = empty_slot(i + 1, true);
            let t = if *f {
                let addr = IpAddr::V4(Ipv4Addr::new(10, 1, 0, i as u8 + 1));
                o.addr = Some(addr);
                o.port = Some(8080);
                o.admin = AdminState::Ready;
                o.status = ServerStatus::Stable(Health::Up);
                o.check_status = Some("L7OK".into());
                Target::Serve { addr, port: 8080, weight: 1, drain: false, admitted: false }
            } else {
                Target::Empty
            };
            observed.push(o);
            targets.push((format!("web{}", i + 1), t));
        }
        let changed = (change < targets.len()).then(|| {
            targets[change].1 = Target::Serve {
                addr: IpAddr::V4(Ipv4Addr::new(10, 2, 0, new_addr)),
                port: 8080,
                weight: 1,
                drain: false,
                admitted: false,
            };
            format!("web{}", change + 1)
        });
        let cmds = plan("web", &targets, &observed, &ctx());
        for c in &cmds {
            let (_, s) = c.target().unwrap();
            prop_assert_eq!(Some(s.to_string()), changed.clone(), "touched {}", c);
        }
        prop_assert_eq!(cmds.is_empty(), changed.is_none());
    }
}

#[test]
fn filling_a_checked_slot_sets_the_address_then_drains_until_the_first_check_passes() {
    let o = empty_slot(7, true);
    let t = Target::Serve {
        addr: "10.0.0.17".parse().unwrap(),
        port: 8080,
        weight: 1,
        drain: false,
        admitted: false,
    };
    let (cmds, _) = plan_slot("web", &t, &o, &ctx());
    let lines: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        [
            "set server web/web7 addr 10.0.0.17 port 8080",
            "set server web/web7 state drain"
        ]
    );
    let mut o = o;
    for c in &cmds {
        apply(&mut o, c);
    }
    // check not passed yet: nothing to do
    assert!(plan_slot("web", &t, &o, &ctx()).0.is_empty());
    check_passes(&mut o);
    let lines: Vec<String> = plan_slot("web", &t, &o, &ctx())
        .0
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(lines, ["set server web/web7 state ready"]);
}

#[test]
fn a_tagged_weight_goes_after_the_address_and_before_ready() {
    let o = empty_slot(1, false);
    let t = Target::Serve {
        addr: "10.0.0.1".parse().unwrap(),
        port: 80,
        weight: 50,
        drain: false,
        admitted: false,
    };
    let lines: Vec<String> = plan_slot("web", &t, &o, &ctx())
        .0
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "set server web/web1 addr 10.0.0.1 port 80",
            "set weight web/web1 50",
            "set server web/web1 state ready"
        ]
    );
}

#[test]
fn a_graceful_leave_drains_then_waits_for_sessions_then_clears() {
    let addr: IpAddr = "10.0.0.5".parse().unwrap();
    let mut o = empty_slot(3, true);
    o.addr = Some(addr);
    o.port = Some(8080);
    o.admin = AdminState::Ready;
    o.status = ServerStatus::Stable(Health::Up);
    o.check_status = Some("L7OK".into());
    o.scur = 2;
    let leave = |passed| Target::Leave {
        addr,
        port: 8080,
        deadline_passed: passed,
    };
    let s = |cmds: Vec<Command>| cmds.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    assert_eq!(
        s(plan_slot("web", &leave(false), &o, &ctx()).0),
        ["set server web/web3 state drain"]
    );
    o.admin = AdminState::Drain;
    o.status = ServerStatus::Stable(Health::Drain);
    assert!(plan_slot("web", &leave(false), &o, &ctx()).0.is_empty());
    o.scur = 0;
    assert_eq!(
        s(plan_slot("web", &leave(false), &o, &ctx()).0),
        [
            "set server web/web3 state maint",
            "set server web/web3 addr 127.0.0.1 port 9"
        ]
    );
    o.scur = 5;
    assert_eq!(
        s(plan_slot("web", &leave(true), &o, &ctx()).0),
        [
            "set server web/web3 state maint",
            "shutdown sessions server web/web3",
            "set server web/web3 addr 127.0.0.1 port 9"
        ]
    );
}

fn member(name: &str, d: u8, want: Want) -> DesiredMember {
    DesiredMember {
        name: name.into(),
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, d)),
        port: Some(8080),
        weight: None,
        want,
    }
}

#[test]
fn after_an_agent_restart_members_keep_the_slots_haproxy_shows_them_in() {
    let mut slots: Vec<ObservedSlot> = (1..=5).map(|i| empty_slot(i, true)).collect();
    // HAProxy has b in web4 and a in web2 (from a previous agent run)
    for (i, d) in [(3usize, 2u8), (1, 1)] {
        slots[i].addr = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, d)));
        slots[i].port = Some(8080);
        slots[i].admin = AdminState::Ready;
        slots[i].status = ServerStatus::Stable(Health::Up);
    }
    let mut book = Book::new();
    let desired = vec![member("a", 1, Want::Ready), member("b", 2, Want::Ready)];
    book.update(
        &desired,
        &slots,
        PH,
        Some(9),
        Instant::now(),
        Duration::from_secs(5),
    );
    assert_eq!(book.slot_of("a"), Some("web2"));
    assert_eq!(book.slot_of("b"), Some("web4"));
    let cmds = plan("web", &book.targets(&slots), &slots, &ctx());
    assert!(cmds.is_empty(), "{cmds:?}");
}

#[test]
fn more_members_than_slots_queue_and_take_the_next_free_slot() {
    let slots: Vec<ObservedSlot> = (1..=3).map(|i| empty_slot(i, false)).collect();
    let mut book = Book::new();
    let now = Instant::now();
    let mut desired: Vec<DesiredMember> = (1..=5)
        .map(|i| member(&format!("m{i}"), i, Want::Ready))
        .collect();
    book.update(&desired, &slots, PH, Some(9), now, Duration::from_secs(5));
    assert_eq!(book.queue().len(), 2);
    let placed: Vec<_> = (1..=5)
        .filter(|i| book.slot_of(&format!("m{i}")).is_some())
        .collect();
    assert_eq!(placed.len(), 3);
    // one placed member fails: its slot goes to the first queued member
    let gone = format!("m{}", placed[0]);
    let first_queued = book.queue()[0].clone();
    desired.iter_mut().find(|d| d.name == gone).unwrap().want = Want::Failed;
    book.update(&desired, &slots, PH, Some(9), now, Duration::from_secs(5));
    assert!(book.slot_of(&gone).is_none());
    assert!(book.slot_of(&first_queued).is_some());
    assert_eq!(book.queue().len(), 1);
}

#[test]
fn a_stale_drain_deadline_does_nothing() {
    let slots: Vec<ObservedSlot> = (1..=1).map(|i| empty_slot(i, false)).collect();
    let mut book = Book::new();
    let now = Instant::now();
    let d = Duration::from_secs(5);
    book.update(&[member("a", 1, Want::Ready)], &slots, PH, Some(9), now, d);
    let t1 = book.update(&[member("a", 1, Want::Leave)], &slots, PH, Some(9), now, d);
    assert_eq!(t1.len(), 1);
    // the member comes back before the deadline: the old token is stale
    book.update(&[member("a", 1, Want::Ready)], &slots, PH, Some(9), now, d);
    assert!(!book.on_deadline("web1", t1[0].token));
    let t2 = book.update(&[], &slots, PH, Some(9), now, d);
    assert!(!book.on_deadline("web1", t1[0].token));
    assert!(book.on_deadline("web1", t2[0].token));
}

#[test]
fn a_failed_member_that_returns_gets_its_old_slot_back_if_still_free() {
    let slots: Vec<ObservedSlot> = (1..=10).map(|i| empty_slot(i, false)).collect();
    let mut book = Book::new();
    let now = Instant::now();
    let d = Duration::from_secs(5);
    let ms: Vec<_> = (1..=4)
        .map(|i| member(&format!("m{i}"), i, Want::Ready))
        .collect();
    book.update(&ms, &slots, PH, Some(9), now, d);
    let before = book.slot_of("m2").unwrap().to_string();
    let mut failed = ms.clone();
    failed[1].want = Want::Failed;
    book.update(&failed, &slots, PH, Some(9), now, d);
    assert!(book.slot_of("m2").is_none());
    book.update(&ms, &slots, PH, Some(9), now, d);
    assert_eq!(book.slot_of("m2"), Some(before.as_str()));
}

#[test]
fn two_load_balancers_place_the_same_members_in_the_same_slots() {
    let slots: Vec<ObservedSlot> = (1..=20).map(|i| empty_slot(i, false)).collect();
    let ms: Vec<_> = (1..=12)
        .map(|i| member(&format!("node-{i}"), i, Want::Ready))
        .collect();
    let mut rev = ms.clone();
    rev.reverse();
    let (mut a, mut b) = (Book::new(), Book::new());
    a.update(&ms, &slots, PH, Some(9), Instant::now(), Duration::ZERO);
    b.update(&rev, &slots, PH, Some(9), Instant::now(), Duration::ZERO);
    for m in &ms {
        assert_eq!(a.slot_of(&m.name), b.slot_of(&m.name));
    }
}
