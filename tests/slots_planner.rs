//! Planner and assignment book: property tests against a model of HAProxy 2.6's slot
//! behaviour (state ready on a checked slot is UP at once; drain waits for the check).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use haserf::haproxy::{AdminState, Command, Health, ServerStatus};
use haserf::slots::book::{Book, Cause, DesiredMember, Want};
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
        agent: false,
        declared_disabled: true,
        fqdn: None,
        signature: String::new(),
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
                agent: false,
                declared_disabled: true,
                fqdn: None,
                signature: String::new(),
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
                drain
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
                Target::Serve { addr, port: 8080, weight: 1, drain: false }
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

/// The status strings of tests/fixtures/haproxy/status-strings.txt: (status, opens the
/// first-check gate).
fn status_table() -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/haproxy/status-strings.txt"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1] == "yes")
        })
        .collect()
}

#[test]
fn every_status_string_of_the_captures_is_in_the_planner_table() {
    let known: Vec<String> = status_table().into_iter().map(|(s, _)| s).collect();
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/haproxy");
    let mut dirs = vec![top.clone()];
    for v in ["3.0", "3.2"] {
        dirs.push(top.join(v));
    }
    let mut seen = 0;
    for d in dirs {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("csv") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let table = haserf::haproxy::StatTable::parse(&text).unwrap();
            for row in table.servers() {
                seen += 1;
                let s = row.status_str().to_string();
                assert!(
                    known.contains(&s),
                    "{}: status {s:?} not in the table",
                    p.display()
                );
            }
        }
    }
    assert!(seen > 100, "only {seen} server rows read");
}

fn serving_slot(status: &str, admin: AdminState, check_status: Option<&str>) -> ObservedSlot {
    let mut o = empty_slot(1, status != "no check");
    o.addr = Some("10.0.0.1".parse().unwrap());
    o.port = Some(8080);
    o.admin = admin;
    o.status = ServerStatus::parse(status);
    o.check_status = check_status.map(str::to_string);
    o.agent = status.contains("(agent)");
    o
}

#[test]
fn every_status_string_gets_the_right_step_from_the_planner() {
    let target = Target::Serve {
        addr: "10.0.0.1".parse().unwrap(),
        port: 8080,
        weight: 1,
        drain: false,
    };
    for (status, opens) in status_table() {
        let parsed = ServerStatus::parse(&status);
        assert!(
            !matches!(parsed, ServerStatus::Other(_)),
            "{status} is not modelled"
        );
        assert_eq!(parsed.to_string(), status);
        let ready = |c: &[Command]| {
            c.iter().any(|c| {
                matches!(
                    c,
                    Command::SetState {
                        state: AdminState::Ready,
                        ..
                    }
                )
            })
        };
        // waiting in drain for the first check, the check passed: ready only on a settled
        // up-ish status (a transition, DOWN or a maintenance form keeps waiting)
        if status != "no check" && !status.starts_with("MAINT") {
            let o = serving_slot(&status, AdminState::Drain, Some("L7OK"));
            let (c, _) = plan_slot("web", &target, &o, &ctx());
            assert_eq!(ready(&c), opens, "{status}: {c:?}");
            assert!(c.len() <= 1, "{status}: {c:?}");
            // a failed last check never opens the gate
            let o = serving_slot(&status, AdminState::Drain, Some("L4CON"));
            assert!(
                plan_slot("web", &target, &o, &ctx()).0.is_empty(),
                "{status}"
            );
        }
        // in service at its member: whatever the health (checks, agent, tracked server),
        // haserf sends nothing
        let o = serving_slot(&status, AdminState::Ready, Some("L7OK"));
        let (c, _) = plan_slot("web", &target, &o, &ctx());
        assert!(c.is_empty(), "{status}: in service, planned {c:?}");
        // a free slot stays untouched whatever its status
        let mut o = serving_slot(&status, AdminState::Maint, None);
        o.addr = Some(PH);
        o.port = Some(9);
        assert!(
            plan_slot("web", &Target::Empty, &o, &ctx()).0.is_empty(),
            "{status}"
        );
    }
}

#[test]
fn an_agent_check_slot_never_gets_a_weight_and_its_drain_is_the_agents() {
    let target = Target::Serve {
        addr: "10.0.0.1".parse().unwrap(),
        port: 8080,
        weight: 100,
        drain: false,
    };
    // the agent answered 50%: uweight 50, configured 100
    let mut o = serving_slot("UP", AdminState::Ready, Some("L7OK"));
    o.agent = true;
    o.weight = 50;
    o.iweight = 100;
    assert!(plan_slot("web", &target, &o, &ctx()).0.is_empty());
    // the agent answered drain: the slot is the agent's (held once settled)
    let mut o = serving_slot("DRAIN (agent)", AdminState::Drain, Some("L7OK"));
    o.agent = true;
    assert!(haserf::slots::planner::agent_holds(&target, &o));
    o.agent = false;
    assert!(!haserf::slots::planner::agent_holds(&target, &o));
}

#[test]
fn a_port_less_template_gets_the_address_without_a_port() {
    let c = PlanContext {
        placeholder: PH,
        template_port: 0,
    };
    let mut o = empty_slot(3, true);
    o.port = Some(0);
    let target = Target::Serve {
        addr: "10.0.0.7".parse().unwrap(),
        port: 0,
        weight: 1,
        drain: false,
    };
    let (cmds, _) = plan_slot("web", &target, &o, &c);
    let lines: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        [
            "set server web/web3 addr 10.0.0.7",
            "set server web/web3 state drain"
        ]
    );
    // once there (HAProxy keeps port 0), nothing more than the check gate
    o.addr = Some("10.0.0.7".parse().unwrap());
    o.admin = AdminState::Drain;
    o.status = ServerStatus::Stable(Health::Up);
    o.check_status = Some("L7OK".into());
    let lines: Vec<String> = plan_slot("web", &target, &o, &c)
        .0
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(lines, ["set server web/web3 state ready"]);
    // released: back to the placeholder, still without a port
    let leave = Target::Leave {
        addr: "10.0.0.7".parse().unwrap(),
        port: 0,
        deadline_passed: true,
    };
    let lines: Vec<String> = plan_slot("web", &leave, &o, &c)
        .0
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "set server web/web3 state maint",
            "set server web/web3 addr 127.0.0.1"
        ]
    );
}

fn server(name: &str, id: u32, addr: &str, port: u16, disabled: bool, sig: &str) -> ObservedSlot {
    let mut o = empty_slot(id as usize, true);
    o.name = name.into();
    o.addr = Some(addr.parse().unwrap());
    o.port = Some(port);
    o.declared_disabled = disabled;
    o.signature = sig.into();
    o
}

#[test]
fn only_servers_a_template_line_made_are_slots() {
    use haserf::slots::discovery::find_templates;
    let names = |v: &[ObservedSlot], idx: &[usize]| -> Vec<String> {
        idx.iter().map(|i| v[*i].name.clone()).collect()
    };
    // the static-only backend: nothing is a slot
    let v = [
        server("s1", 1, "10.0.0.1", 8080, false, "a"),
        server("static2", 2, "10.0.0.2", 8080, false, "check"),
        server("static3", 3, "10.0.0.3", 8080, false, "a"),
    ];
    let (t, idx) = find_templates(&v);
    assert!(t.is_empty() && idx.is_empty(), "{t:?}");
    // static servers with identical settings but their own addresses: still not slots
    let v = [
        server("app1", 1, "10.0.0.1", 80, false, "a"),
        server("app2", 2, "10.0.0.2", 80, false, "a"),
    ];
    assert!(find_templates(&v).1.is_empty());
    // a `disabled` template (filled or not) next to static servers
    let v = [
        server("web1", 1, "10.1.0.1", 8080, true, "a"),
        server("web2", 2, "127.0.0.1", 9, true, "a"),
        server("web3", 3, "127.0.0.1", 9, true, "a"),
        server("web4", 4, "10.0.0.9", 80, false, "a"),
        server("backup1", 5, "10.0.0.8", 80, false, "a"),
    ];
    let (t, idx) = find_templates(&v);
    assert_eq!(names(&v, &idx), ["web1", "web2", "web3"]);
    assert_eq!((t[0].prefix.as_str(), t[0].numbers), ("web", (1, 3)));
    // a template without `disabled`: its free slots share the placeholder
    let v = [
        server("api1", 1, "127.0.0.1", 9, false, "a"),
        server("api2", 2, "127.0.0.1", 9, false, "a"),
        server("api3", 3, "10.0.0.5", 80, false, "a"),
    ];
    assert_eq!(names(&v, &find_templates(&v).1), ["api1", "api2", "api3"]);
    // two templates in one backend, numbering from 5
    let v = [
        server("a5", 1, "127.0.0.1", 9, true, "a"),
        server("a6", 2, "127.0.0.1", 9, true, "a"),
        server("b1", 3, "127.0.0.1", 9, true, "b"),
    ];
    let (t, idx) = find_templates(&v);
    assert_eq!(idx.len(), 3);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].numbers, (5, 6));
}

#[test]
fn the_book_names_why_each_occupant_leaves_its_slot() {
    let slots: Vec<ObservedSlot> = (1..=4).map(|i| empty_slot(i, true)).collect();
    let mut book = Book::new();
    let now = Instant::now();
    let t = Duration::from_secs(5);
    let all = ["a", "b", "c", "d"].map(|n| member(n, n.as_bytes()[0] - b'a' + 1, Want::Ready));
    book.update(&all, &slots, PH, Some(9), now, t);
    let slot = |b: &Book, m: &str| b.slot_of(m).unwrap().to_string();
    let (sa, sb, sc, sd) = (
        slot(&book, "a"),
        slot(&book, "b"),
        slot(&book, "c"),
        slot(&book, "d"),
    );
    book.set_refusals([("b".to_string(), "invalid port tag".to_string())].into());
    let next = vec![
        member("a", 1, Want::Leave),
        member("c", 3, Want::Failed),
        member("d", 4, Want::Ready),
    ];
    book.update(&next, &slots, PH, Some(9), now, t);
    assert_eq!(book.cause(&sa), Some(&Cause::Leave));
    assert_eq!(
        book.cause(&sb),
        Some(&Cause::Refused("invalid port tag".into()))
    );
    assert_eq!(book.cause(&sd), None, "a member that stays has no cause");
    // a failed member's slot is emptied at once and remembered as a crash
    assert_eq!(book.member_of(&sc), None);
    assert_eq!(book.former(&sc), Some((Some("c"), &Cause::Crash)));
    assert_eq!(Cause::Refused("x".into()).to_string(), "refused: x");
    // once the slot is given again, the former occupant is forgotten
    let back = vec![member("c", 3, Want::Ready), member("d", 4, Want::Ready)];
    book.update(&back, &slots, PH, Some(9), now, t);
    assert_eq!(book.slot_of("c"), Some(sc.as_str()));
    assert_eq!(book.former(&sc), None);
}

#[test]
fn a_failed_member_whose_slot_has_sessions_drains_until_they_end_even_when_left_follows() {
    let mut slots: Vec<ObservedSlot> = (1..=2).map(|i| empty_slot(i, false)).collect();
    let mut book = Book::new();
    let now = Instant::now();
    let d = Duration::from_secs(30);
    let a = member("a", 1, Want::Ready);
    book.update(std::slice::from_ref(&a), &slots, PH, Some(9), now, d);
    let slot = book.slot_of("a").unwrap().to_string();
    let i = slots.iter().position(|s| s.name == slot).unwrap();
    for c in plan("web", &book.targets(&slots), &slots, &ctx()) {
        apply(&mut slots[i], &c);
    }
    slots[i].scur = 1;
    // heard failed (past the failed grace) with a session open: drained, not emptied
    let timers = book.update(&[member("a", 1, Want::Failed)], &slots, PH, Some(9), now, d);
    assert_eq!(timers.len(), 1, "a drain deadline, as for a leave");
    assert_eq!(timers[0].at, now + d);
    assert_eq!(book.slot_of("a"), Some(slot.as_str()));
    let (cmds, _) = plan_slot("web", &book.targets(&slots)[i].1, &slots[i], &ctx());
    assert_eq!(
        cmds,
        vec![Command::set_state("web", &slot, AdminState::Drain).unwrap()]
    );
    apply(&mut slots[i], &cmds[0]);
    // then `left` arrives: still the same drain, no new deadline
    let t2 = book.update(&[member("a", 1, Want::Leave)], &slots, PH, Some(9), now, d);
    assert!(t2.is_empty());
    assert!(plan("web", &book.targets(&slots), &slots, &ctx()).is_empty());
    // the session ends: maint and clear, then the slot is free
    slots[i].scur = 0;
    let cmds = plan("web", &book.targets(&slots), &slots, &ctx());
    assert_eq!(
        cmds[0],
        Command::set_state("web", &slot, AdminState::Maint).unwrap()
    );
    for c in &cmds {
        apply(&mut slots[i], c);
    }
    let released = book.release_done(&slots);
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].cause, Cause::Crash);
    assert!(book.slot_of("a").is_none());
}

#[test]
fn a_failed_member_whose_slot_is_idle_is_emptied_at_once() {
    let slots: Vec<ObservedSlot> = (1..=2).map(|i| empty_slot(i, false)).collect();
    let mut book = Book::new();
    let now = Instant::now();
    let d = Duration::from_secs(30);
    book.update(&[member("a", 1, Want::Ready)], &slots, PH, Some(9), now, d);
    let timers = book.update(&[member("a", 1, Want::Failed)], &slots, PH, Some(9), now, d);
    assert!(timers.is_empty());
    assert!(book.slot_of("a").is_none());
}
