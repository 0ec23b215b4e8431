//! Admission (`--admit check|gossip`) against a real HAProxy: in `check` mode a member whose
//! app does not answer never goes in rotation and a live one goes in on the agent's probe,
//! long before HAProxy's first check; in `gossip` mode a member goes in at once and HAProxy's
//! active checks take a dead one out within their configured limits.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use haserf::control::model::SlotState;
use haserf::slots::{
    spawn_reconciler, Admission, Admit, DesiredMember, Probe, ReconcilerConfig, ReconcilerHandle,
    Want,
};
use support::{alloc_ip, free_port_on, wait_until, Haproxy, HaproxyConfig, HttpBackend};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The slot setup with checks every `inter` (`fall 2`, `rise 1`, `timeout check 1s`).
fn haproxy(inter: &str) -> Haproxy {
    haproxy_with(inter, 4)
}

/// [`haproxy`] with `slots` slots.
fn haproxy_with(inter: &str, slots: u32) -> Haproxy {
    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let st = SocketAddr::from((ip, free_port_on(ip)));
    let cfg = HaproxyConfig::slots("web", slots, fe, st);
    let body = cfg.body.replace(
        "default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2",
        &format!("default-server inter {inter} fastinter {inter} downinter {inter} rise 1 fall 2"),
    );
    Haproxy::start(HaproxyConfig::new(&body))
}

fn config(h: &Haproxy, mode: Admit, probe: Probe) -> ReconcilerConfig {
    let mut c = ReconcilerConfig::new(h.admin_socket().display().to_string(), vec!["web".into()]);
    c.resync_interval = Duration::from_millis(300);
    c.admission.insert("web".into(), Admission { mode, probe });
    c
}

fn reconciler(h: &Haproxy, mode: Admit, probe: Probe) -> ReconcilerHandle {
    spawn_reconciler(config(h, mode, probe))
}

fn member(name: &str, addr: SocketAddr) -> DesiredMember {
    DesiredMember {
        name: name.into(),
        addr: addr.ip(),
        port: Some(addr.port()),
        weight: None,
        want: Want::Ready,
    }
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let ip = alloc_ip();
    SocketAddr::from((ip, free_port_on(ip)))
}

/// HAProxy's row of the slot holding `addr`, if any.
fn row_of(h: &Haproxy, addr: SocketAddr) -> Option<support::StatRow> {
    h.slots("web")
        .into_iter()
        .find(|r| r.addr() == addr.to_string())
}

/// True when HAProxy would send new requests to `addr`: its slot is UP (settled, or `UP x/y`
/// while checks run) and not in drain (which HAProxy shows as `DRAIN`).
fn in_rotation(h: &Haproxy, addr: SocketAddr) -> bool {
    row_of(h, addr).is_some_and(|r| r.status().starts_with("UP"))
}

/// Waits until `addr` is in rotation.
fn wait_in_rotation(h: &Haproxy, addr: SocketAddr, timeout: Duration) {
    wait_until(timeout, &format!("{addr} in rotation"), || {
        if in_rotation(h, addr) {
            Ok(())
        } else {
            Err(row_of(h, addr))
        }
    });
}

#[test]
fn check_mode_never_puts_a_member_whose_app_does_not_answer_in_rotation() {
    let h = haproxy("300ms");
    let rt = runtime();
    let _g = rt.enter();
    for probe in [
        Probe::Tcp,
        Probe::Http {
            path: "/healthz".into(),
        },
    ] {
        let r = reconciler(&h, Admit::Check, probe.clone());
        let dead = dead_addr();
        let live = HttpBackend::start("live");
        r.set_desired(
            "web",
            vec![member("dead", dead), member("live", live.addr())],
        );
        // the live member proves the pipeline runs; the dead one is watched for 10 check
        // intervals and must never be UP without drain
        wait_in_rotation(&h, live.addr(), Duration::from_secs(10));
        let until = Instant::now() + Duration::from_secs(3);
        let mut placed = false;
        while Instant::now() < until {
            let row = row_of(&h, dead);
            placed |= row.is_some();
            assert!(
                !in_rotation(&h, dead),
                "{probe}: dead member in rotation: {row:?}"
            );
            let slot = r
                .status()
                .slots
                .into_iter()
                .find(|s| s.member.as_deref() == Some("dead"));
            assert_ne!(
                slot.map(|s| s.state),
                Some(SlotState::Ready),
                "{probe}: slot set ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            placed,
            "{probe}: the dead member was given a slot (in drain)"
        );
        r.set_desired("web", vec![]);
        wait_until(Duration::from_secs(10), "slots emptied", || {
            let used = h
                .slots("web")
                .iter()
                .filter(|r| r.status() != "MAINT")
                .count();
            if used == 0 {
                Ok(())
            } else {
                Err(used)
            }
        });
        rt.block_on(r.shutdown());
    }
}

#[test]
fn check_mode_admits_a_live_member_on_the_agents_probe_before_haproxys_first_check() {
    // HAProxy would check a new slot only up to 20 s after it leaves maintenance
    let h = haproxy("20s");
    let rt = runtime();
    let _g = rt.enter();
    let r = reconciler(
        &h,
        Admit::Check,
        Probe::Http {
            path: "/healthz".into(),
        },
    );
    let live = HttpBackend::start("live");
    let t0 = Instant::now();
    r.set_desired("web", vec![member("live", live.addr())]);
    wait_in_rotation(&h, live.addr(), Duration::from_secs(5));
    let took = t0.elapsed();
    eprintln!("admitted on the probe in {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn gossip_mode_admits_at_once_and_haproxy_takes_a_dead_member_out_within_its_check_limits() {
    let inter = Duration::from_millis(300);
    let h = haproxy("300ms");
    let rt = runtime();
    let _g = rt.enter();
    let r = reconciler(&h, Admit::Gossip, Probe::Tcp);
    let live = HttpBackend::start("live");
    let dead = dead_addr();
    let t0 = Instant::now();
    r.set_desired(
        "web",
        vec![member("live", live.addr()), member("dead", dead)],
    );
    wait_until(Duration::from_secs(2), "both slots set ready", || {
        let st = r.status();
        let ready = st
            .slots
            .iter()
            .filter(|s| s.member.is_some() && s.state == SlotState::Ready)
            .count();
        if ready == 2 {
            Ok(())
        } else {
            Err(st.slots)
        }
    });
    let ready_after = t0.elapsed();
    assert!(in_rotation(&h, live.addr()) || row_of(&h, live.addr()).is_some());
    // fall 2 checks every inter, each failing within `timeout check 1s` (a refused connect
    // fails at once): out after at most one inter to the first check, then fall × inter
    let limit = inter * 3 + Duration::from_secs(1);
    let out = wait_until(limit * 2, "the dead member marked DOWN", || {
        let row = row_of(&h, dead);
        match row.as_ref().map(|r| r.status().to_string()) {
            Some(s) if s.starts_with("DOWN") => Ok(t0.elapsed()),
            _ => Err(row),
        }
    });
    eprintln!("gossip mode: ready after {ready_after:?}, dead member DOWN after {out:?}");
    assert!(
        out <= ready_after + limit,
        "DOWN after {out:?}, limit {limit:?}"
    );
    assert!(in_rotation(&h, live.addr()), "the live member stays in");
    rt.block_on(r.shutdown());
}

#[test]
fn a_member_change_is_measured_once_from_its_publication_to_haproxys_answer() {
    use haserf::metrics::latency::Latency;
    use haserf::metrics::MetricsRegistry;
    let h = haproxy("300ms");
    let rt = runtime();
    let _g = rt.enter();
    let registry = MetricsRegistry::new();
    let mut c = config(&h, Admit::Gossip, Probe::Tcp);
    c.latency = Some(Latency::register(&registry));
    let r = spawn_reconciler(c);
    let live = HttpBackend::start("live");
    // published 200 ms ago: the measure starts there, not when the reconciler got it
    let changed = std::time::SystemTime::now() - Duration::from_millis(200);
    r.set_desired_at("web", vec![member("live", live.addr())], changed);
    wait_in_rotation(&h, live.addr(), Duration::from_secs(5));
    // passes without a change (resync) add nothing
    std::thread::sleep(Duration::from_millis(800));
    let text = registry.encode();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(
        line("haserf_member_change_to_command_seconds_count{backend=\"web\"}"),
        1.0
    );
    let sum = line("haserf_member_change_to_command_seconds_sum{backend=\"web\"}");
    assert!((0.2..2.0).contains(&sum), "{sum}");
    rt.block_on(r.shutdown());
}

#[test]
fn two_hundred_members_at_once_are_put_in_rotation_in_one_batch_of_two_exchanges() {
    let h = haproxy_with("1s", 200);
    let rt = runtime();
    let _g = rt.enter();
    let r = reconciler(&h, Admit::Gossip, Probe::Tcp);
    let backends: Vec<HttpBackend> = (0..200)
        .map(|i| HttpBackend::start(&format!("node-{i}")))
        .collect();
    r.set_desired(
        "web",
        backends
            .iter()
            .map(|b| member(b.name(), b.addr()))
            .collect(),
    );
    wait_until(Duration::from_secs(20), "200 slots set ready", || {
        let st = r.status();
        let ready = st
            .slots
            .iter()
            .filter(|s| s.member.is_some() && s.state == SlotState::Ready)
            .count();
        if ready == 200 {
            Ok(())
        } else {
            Err(ready)
        }
    });
    let up = h
        .slots("web")
        .iter()
        .filter(|r| r.status().starts_with("UP"))
        .count();
    assert_eq!(up, 200, "HAProxy shows every member in rotation");
    // one pass: every `set server … addr` in one exchange, then every `state ready` in a
    // second (a refused address must not be followed by `ready`), not one per member
    assert_eq!(r.status().applies, 2, "one batch, two exchanges");
    rt.block_on(r.shutdown());
}
