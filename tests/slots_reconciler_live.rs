//! The reconciler driving a real HAProxy (`server-template web 1-50`) with real HTTP
//! backends: fill, empty, drain with a request in flight, restart, drift, queue, agent
//! restart.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use haserf::control::model::SlotState;
use haserf::slots::{spawn_reconciler, DesiredMember, ReconcilerConfig, ReconcilerHandle, Want};
use support::{http_get, wait_until, Haproxy, HttpBackend};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(h: &Haproxy) -> ReconcilerConfig {
    let mut c = ReconcilerConfig::new(h.admin_socket().display().to_string(), vec!["web".into()]);
    c.drain_timeout = Duration::from_secs(20);
    c.resync_interval = Duration::from_millis(300);
    c
}

fn member(b: &HttpBackend) -> DesiredMember {
    DesiredMember {
        name: b.name().to_string(),
        addr: b.addr().ip(),
        port: Some(b.addr().port()),
        weight: None,
        want: Want::Ready,
    }
}

/// Slots whose HAProxy status is `UP` with a member, by member name → slot.
fn up_members(r: &ReconcilerHandle) -> HashMap<String, String> {
    r.status()
        .slots
        .iter()
        .filter(|s| s.haproxy_status == "UP" && s.state == SlotState::Ready)
        .filter_map(|s| s.member.clone().map(|m| (m, s.slot.clone())))
        .collect()
}

/// Waits until exactly `n` members are UP in ready slots; returns them (member → slot).
fn wait_up(r: &ReconcilerHandle, n: usize, timeout: Duration) -> HashMap<String, String> {
    wait_until(timeout, &format!("{n} members UP"), || {
        let up = up_members(r);
        if up.len() == n {
            Ok(up)
        } else {
            Err(up)
        }
    })
}

fn hosts_seen(fe: SocketAddr, requests: usize) -> BTreeSet<String> {
    (0..requests)
        .filter_map(|_| http_get(fe, "/").ok())
        .filter_map(|r| r.backend_host())
        .collect()
}

#[test]
fn fifty_filled_slots_each_answer_through_haproxy_and_empty_again() {
    let h = Haproxy::start_slots("web", 50);
    let backends: Vec<HttpBackend> = (0..50)
        .map(|i| HttpBackend::start(&format!("node-{i}")))
        .collect();
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    r.set_desired("web", backends.iter().map(member).collect());
    wait_up(&r, 50, Duration::from_secs(20));
    let st = r.status();
    assert!(st.ready);
    eprintln!(
        "first-check gate: last {:?} ms, max {:?} ms",
        st.check_gate_last_ms, st.check_gate_max_ms
    );
    // every member answers through HAProxy (round robin over 50 slots)
    let want: BTreeSet<String> = backends.iter().map(|b| b.name().to_string()).collect();
    let mut seen = BTreeSet::new();
    wait_until(Duration::from_secs(20), "every backend answered", || {
        seen.extend(hosts_seen(h.frontend_addr(), 50));
        if seen == want {
            Ok(())
        } else {
            Err(want.difference(&seen).count())
        }
    });
    // empty them
    r.set_desired("web", Vec::new());
    wait_until(
        Duration::from_secs(20),
        "every slot back in MAINT at 127.0.0.1:9",
        || {
            let rows = h.slots("web");
            let busy = rows
                .iter()
                .filter(|r| r.status() != "MAINT" || r.addr() != "127.0.0.1:9")
                .count();
            if busy == 0 {
                Ok(())
            } else {
                Err(busy)
            }
        },
    );
    assert!(
        http_get(h.frontend_addr(), "/")
            .map(|r| r.status)
            .unwrap_or(503)
            == 503
    );
    rt.block_on(r.shutdown());
}

#[test]
fn a_leaving_member_with_a_request_in_flight_stays_drain_until_it_ends() {
    let h = Haproxy::start_slots("web", 4);
    let a = HttpBackend::start("stay");
    let b = HttpBackend::start("leave");
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    r.set_desired("web", vec![member(&a), member(&b)]);
    wait_up(&r, 2, Duration::from_secs(10));
    let slot = up_members(&r)["leave"].clone();
    // a long request to "leave": retry until round robin sends one there
    let fe = h.frontend_addr();
    let slow = std::thread::spawn(move || loop {
        let resp = http_get(fe, "/sleep/3000").unwrap();
        if resp.backend_host().as_deref() == Some("leave") {
            return resp;
        }
    });
    wait_until(
        Duration::from_secs(15),
        "a session open on the leaving slot",
        || {
            let row = h
                .slots("web")
                .into_iter()
                .find(|x| x.server() == slot)
                .unwrap();
            if row.get("scur") == "1" {
                Ok(())
            } else {
                Err(row.get("scur").to_string())
            }
        },
    );
    r.set_desired("web", vec![member(&a)]);
    h.wait_slot_status("web", &slot, "DRAIN", Duration::from_secs(5));
    // while the request runs the slot stays DRAIN and new requests go elsewhere
    let mut during = 0;
    while !slow.is_finished() {
        let row = h
            .slots("web")
            .into_iter()
            .find(|x| x.server() == slot)
            .unwrap();
        if row.get("scur") == "0" {
            break;
        }
        assert!(row.status().starts_with("DRAIN"), "{}", row.status());
        let host = http_get(fe, "/").unwrap().backend_host();
        assert_eq!(host.as_deref(), Some("stay"));
        during += 1;
    }
    assert!(during > 0, "no request was made while draining");
    let resp = slow.join().unwrap();
    assert_eq!(resp.status, 200, "the in-flight request completed");
    h.wait_slot_status("web", &slot, "MAINT", Duration::from_secs(5));
    wait_until(Duration::from_secs(5), "address cleared", || {
        let row = h
            .slots("web")
            .into_iter()
            .find(|x| x.server() == slot)
            .unwrap();
        if row.addr() == "127.0.0.1:9" {
            Ok(())
        } else {
            Err(row.addr().to_string())
        }
    });
    rt.block_on(r.shutdown());
}

#[test]
fn haproxy_restarted_under_the_reconciler_gets_its_slots_back_within_two_seconds() {
    let mut h = Haproxy::start_slots("web", 10);
    let backends: Vec<HttpBackend> = (0..5)
        .map(|i| HttpBackend::start(&format!("r{i}")))
        .collect();
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    r.set_desired("web", backends.iter().map(member).collect());
    wait_up(&r, 5, Duration::from_secs(10));
    let before = up_members(&r);
    let old_pid = h.pid();
    h.restart();
    assert_ne!(h.pid(), old_pid);
    let t0 = std::time::Instant::now();
    wait_until(
        Duration::from_secs(2),
        "slots restored after the restart",
        || {
            let rows = h.slots("web");
            let up = rows.iter().filter(|r| r.status() == "UP").count();
            if up == 5 {
                Ok(())
            } else {
                Err(up)
            }
        },
    );
    eprintln!("restored {:?} after the restart", t0.elapsed());
    wait_until(Duration::from_secs(2), "restart seen", || {
        let s = r.status();
        if s.haproxy_restarts >= 1 && up_members(&r) == before {
            Ok(())
        } else {
            Err(s.haproxy_restarts)
        }
    });
    rt.block_on(r.shutdown());
}

#[test]
fn a_slot_changed_by_hand_is_repaired() {
    let h = Haproxy::start_slots("web", 4);
    let a = HttpBackend::start("a");
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    r.set_desired("web", vec![member(&a)]);
    wait_until(Duration::from_secs(10), "a UP", || {
        up_members(&r).get("a").cloned().ok_or(())
    });
    let slot = up_members(&r)["a"].clone();
    h.cmd(&format!(
        "set server web/{slot} state maint; set server web/{slot} addr 10.66.0.1 port 1"
    ));
    wait_until(Duration::from_secs(5), "repaired", || {
        let row = h
            .slots("web")
            .into_iter()
            .find(|x| x.server() == slot)
            .unwrap();
        if row.status() == "UP" && row.addr() == a.addr().to_string() {
            Ok(())
        } else {
            Err(format!("{} {}", row.status(), row.addr()))
        }
    });
    assert!(r.status().drift_repairs >= 1);
    rt.block_on(r.shutdown());
}

#[test]
fn sixty_members_for_fifty_slots_place_fifty_and_queue_ten_until_slots_free() {
    let h = Haproxy::start_slots("web", 50);
    let backends: Vec<HttpBackend> = (0..60)
        .map(|i| HttpBackend::start(&format!("q{i:02}")))
        .collect();
    let rt = runtime();
    let _g = rt.enter();
    let mut cfg = config(&h);
    cfg.drain_timeout = Duration::from_secs(2);
    let r = spawn_reconciler(cfg);
    let mut desired: Vec<DesiredMember> = backends.iter().map(member).collect();
    r.set_desired("web", desired.clone());
    let queued = wait_until(Duration::from_secs(20), "50 UP, 10 queued", || {
        let s = r.status();
        let q = s.queue.get("web").cloned().unwrap_or_default();
        if up_members(&r).len() == 50 && q.len() == 10 {
            Ok(q)
        } else {
            Err((up_members(&r).len(), q.len()))
        }
    });
    // five placed members fail: the first five queued take their slots
    let placed: Vec<String> = up_members(&r).keys().take(5).cloned().collect();
    for d in desired.iter_mut().filter(|d| placed.contains(&d.name)) {
        d.want = Want::Failed;
    }
    r.set_desired("web", desired.clone());
    wait_until(Duration::from_secs(10), "queue down to 5", || {
        let s = r.status();
        let q = s.queue.get("web").cloned().unwrap_or_default();
        let up = up_members(&r);
        if q.len() == 5 && queued[..5].iter().all(|m| up.contains_key(m)) && up.len() == 50 {
            Ok(())
        } else {
            Err((q, up.len()))
        }
    });
    // five more leave gracefully: the rest of the queue gets in
    let leaving: Vec<String> = up_members(&r)
        .keys()
        .filter(|m| !queued.contains(m))
        .take(5)
        .cloned()
        .collect();
    desired.retain(|d| !leaving.contains(&d.name));
    r.set_desired("web", desired);
    wait_until(Duration::from_secs(15), "queue empty, 50 UP", || {
        let s = r.status();
        let q = s.queue.get("web").cloned().unwrap_or_default();
        let up = up_members(&r);
        if q.is_empty() && up.len() == 50 && queued.iter().all(|m| up.contains_key(m)) {
            Ok(())
        } else {
            Err((q, up.len()))
        }
    });
    rt.block_on(r.shutdown());
}

#[test]
fn after_an_agent_restart_nobody_moves_and_nothing_is_sent() {
    let h = Haproxy::start_slots("web", 20);
    let backends: Vec<HttpBackend> = (0..8)
        .map(|i| HttpBackend::start(&format!("s{i}")))
        .collect();
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    r.set_desired("web", backends.iter().map(member).collect());
    wait_up(&r, 8, Duration::from_secs(10));
    let before = up_members(&r);
    rt.block_on(r.shutdown());
    // HAProxy keeps the slots when the agent stops
    assert_eq!(
        h.slots("web").iter().filter(|x| x.status() == "UP").count(),
        8
    );
    // a fresh agent, with the members listed in another order
    let r2 = spawn_reconciler(config(&h));
    // before the new agent says what it wants, it reads HAProxy but changes nothing
    wait_until(Duration::from_secs(5), "a few passes", || {
        let s = r2.status();
        if s.passes >= 3 {
            Ok(())
        } else {
            Err(s.passes)
        }
    });
    assert!(!r2.status().ready);
    assert_eq!(r2.status().applies, 0);
    assert_eq!(
        h.slots("web").iter().filter(|x| x.status() == "UP").count(),
        8
    );
    let mut ms: Vec<DesiredMember> = backends.iter().map(member).collect();
    ms.reverse();
    r2.set_desired("web", ms);
    wait_until(Duration::from_secs(5), "ready", || {
        if r2.status().ready && up_members(&r2).len() == 8 {
            Ok(())
        } else {
            Err(())
        }
    });
    assert_eq!(up_members(&r2), before);
    assert_eq!(r2.status().applies, 0, "no command needed");
    rt.block_on(r2.shutdown());
}

#[test]
fn an_unreachable_socket_is_retried_until_haproxy_answers() {
    let mut h = Haproxy::start_slots("web", 4);
    let a = HttpBackend::start("late");
    h.stop();
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    r.set_desired("web", vec![member(&a)]);
    wait_until(Duration::from_secs(5), "an error reported", || {
        let s = r.status();
        if s.last_error.is_some() && !s.ready {
            Ok(())
        } else {
            Err(s.passes)
        }
    });
    h.restart();
    wait_until(
        Duration::from_secs(10),
        "placed once HAProxy is back",
        || {
            up_members(&r)
                .get("late")
                .cloned()
                .ok_or(r.status().last_error)
        },
    );
    rt.block_on(r.shutdown());
}

#[test]
fn a_reconciler_on_a_socket_without_admin_level_reports_permission_denied() {
    let h = Haproxy::start_slots("web", 2);
    let a = HttpBackend::start("denied");
    let rt = runtime();
    let _g = rt.enter();
    let mut cfg = config(&h);
    cfg.socket = h.user_socket().display().to_string();
    let r = spawn_reconciler(cfg);
    r.set_desired("web", vec![member(&a)]);
    let err = wait_until(Duration::from_secs(5), "a permission error", || {
        match r.status().last_error {
            Some(e) if e.contains("Permission denied") => Ok(e),
            other => Err(other),
        }
    });
    assert!(err.contains("level admin"), "{err}");
    assert!(r.status().apply_errors >= 1);
    rt.block_on(r.shutdown());
}

/// `GET /` with a `Cookie` header on a fresh connection; returns (backend host, set-cookie).
fn get_with_cookie(fe: SocketAddr, cookie: Option<&str>) -> (Option<String>, Option<String>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(fe).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let c = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: t\r\n{c}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let set_cookie = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .map(|v| v.split(';').next().unwrap_or("").to_string());
    let host = out
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .and_then(|v| v.get("host").and_then(|h| h.as_str()).map(str::to_string));
    (host, set_cookie)
}

#[test]
fn a_dynamic_cookie_follows_the_node_into_another_slot() {
    use support::{alloc_ip, free_port_on, HaproxyConfig};
    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let h = Haproxy::start(HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    cookie SRV insert indirect nocache dynamic
    dynamic-cookie-key test-secret
    server-template web 1-2 127.0.0.1:9 check disabled
"
    )));
    let (a, b, c) = (
        HttpBackend::start("A"),
        HttpBackend::start("B"),
        HttpBackend::start("C"),
    );
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    let mut ma = member(&a);
    r.set_desired("web", vec![ma.clone(), member(&b)]);
    wait_up(&r, 2, Duration::from_secs(10));
    let slot_a = up_members(&r)["A"].clone();
    // A's cookie
    let cookie = wait_until(
        Duration::from_secs(5),
        "a response from A with a cookie",
        || match get_with_cookie(fe, None) {
            (Some(h), Some(c)) if h == "A" => Ok(c),
            other => Err(other),
        },
    );
    // A fails; C takes A's slot; A comes back (queued: no free slot); B leaves; A gets B's slot
    ma.want = Want::Failed;
    r.set_desired("web", vec![ma.clone(), member(&b), member(&c)]);
    wait_until(Duration::from_secs(10), "C in A's old slot", || {
        let up = up_members(&r);
        if up.get("C") == Some(&slot_a) {
            Ok(())
        } else {
            Err(up)
        }
    });
    ma.want = Want::Ready;
    r.set_desired("web", vec![ma.clone(), member(&c)]);
    wait_until(Duration::from_secs(15), "A back, in B's old slot", || {
        let up = up_members(&r);
        match up.get("A") {
            Some(s) if *s != slot_a && up.len() == 2 => Ok(()),
            _ => Err(up),
        }
    });
    // the old cookie still leads to A, not to C who now holds A's old slot
    for _ in 0..10 {
        assert_eq!(get_with_cookie(fe, Some(&cookie)).0.as_deref(), Some("A"));
    }
    rt.block_on(r.shutdown());
}

#[test]
fn a_master_worker_reload_is_detected_and_the_slots_are_pushed_to_the_new_worker() {
    use support::{alloc_ip, free_port_on, Launch, Proc};
    let dir = tempfile::tempdir().unwrap();
    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let admin = dir.path().join("admin.sock");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global
    stats socket {} mode 600 level admin
    stats timeout 30s
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s
frontend fe
    bind {fe}
    default_backend web
backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template web 1-4 127.0.0.1:9 check disabled
",
            admin.display()
        ),
    )
    .unwrap();
    let master = Proc::spawn(Launch::new(
        "haproxy",
        &["-W", "-db", "-f", &cfg.display().to_string()],
        dir.path().join("haproxy.log"),
    ));
    let show_info_pid = || -> Result<u32, String> {
        let r = support::runtime_command(&admin, "show info").map_err(|e| e.to_string())?;
        haserf::haproxy::Info::parse(&r)
            .map(|i| i.pid)
            .map_err(|e| e.to_string())
    };
    let pid1 = wait_until(Duration::from_secs(10), "the worker answers", show_info_pid);
    let a = HttpBackend::start("reloaded");
    let rt = runtime();
    let _g = rt.enter();
    let mut c = ReconcilerConfig::new(admin.display().to_string(), vec!["web".into()]);
    c.resync_interval = Duration::from_millis(300);
    let r = spawn_reconciler(c);
    r.set_desired("web", vec![member(&a)]);
    wait_until(Duration::from_secs(10), "placed", || {
        up_members(&r).get("reloaded").cloned().ok_or(())
    });
    // reload: a new worker, runtime state gone
    master.signal("USR2");
    let pid2 = wait_until(
        Duration::from_secs(10),
        "a new worker",
        || match show_info_pid() {
            Ok(p) if p != pid1 => Ok(p),
            other => Err(other),
        },
    );
    wait_until(
        Duration::from_secs(3),
        "the slot back in the new worker",
        || {
            let s = r.status();
            let up = up_members(&r);
            if s.haproxy_pid == Some(pid2) && s.haproxy_restarts >= 1 && up.contains_key("reloaded")
            {
                Ok(())
            } else {
                Err((s.haproxy_pid, s.haproxy_restarts, up))
            }
        },
    );
    assert_eq!(
        http_get(fe, "/").unwrap().backend_host().as_deref(),
        Some("reloaded")
    );
    rt.block_on(r.shutdown());
    drop(master);
}

#[test]
fn a_suspect_member_keeps_its_slot_in_drain_and_returns_to_rotation() {
    let h = Haproxy::start_slots("web", 4);
    let (a, b) = (HttpBackend::start("ok"), HttpBackend::start("suspect"));
    let rt = runtime();
    let _g = rt.enter();
    let r = spawn_reconciler(config(&h));
    let mut mb = member(&b);
    r.set_desired("web", vec![member(&a), mb.clone()]);
    wait_up(&r, 2, Duration::from_secs(10));
    let slot = up_members(&r)["suspect"].clone();
    mb.want = Want::Drain;
    r.set_desired("web", vec![member(&a), mb.clone()]);
    h.wait_slot_status("web", &slot, "DRAIN", Duration::from_secs(5));
    for _ in 0..10 {
        let host = http_get(h.frontend_addr(), "/").unwrap().backend_host();
        assert_eq!(host.as_deref(), Some("ok"));
    }
    mb.want = Want::Ready;
    r.set_desired("web", vec![member(&a), mb]);
    h.wait_slot_status("web", &slot, "UP", Duration::from_secs(5));
    assert_eq!(up_members(&r).get("suspect"), Some(&slot), "same slot");
    rt.block_on(r.shutdown());
}
