//! HAProxy reloads and restarts lose nothing: the agent keeps HAProxy's server-state file
//! (`--server-state-file`), HAProxy started with the documented lines (`server-state-file`,
//! `load-server-state-from-file global`, slots on a name that never resolves with `init-addr last,127.0.0.1`)
//! fills its slots from it before the agent sends anything, and the agent adopts what
//! already matches (0 runtime commands) and repairs only real differences.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use haserf::control::model::SlotState;
use haserf::haproxy::servers_state::ServersState;
use haserf::slots::{spawn_reconciler, DesiredMember, ReconcilerConfig, ReconcilerHandle, Want};
use support::agent::SlotWatcher;
use support::{
    alloc_ip, free_port_on, http_get, wait_until, Haproxy, HaproxyConfig, HttpBackend, LoopLimits,
    RequestLoop,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `backend` with `slots` slots declared the documented way for the state file, a frontend
/// and the two state-file lines; the file is `@DIR@/server-state`. `extra` goes before the
/// backend (e.g. another backend).
fn state_config(backend: &str, slots: u32, extra: &str) -> HaproxyConfig {
    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let mut c = HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    default_backend {backend}
{extra}
backend {backend}
    balance roundrobin
    option httpchk GET /healthz
    retries 2
    option redispatch
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template {backend} 1-{slots} slot.invalid:9 check disabled init-addr last,127.0.0.1
"
    ))
    .global("    server-state-file @DIR@/server-state");
    c.defaults = Some(format!(
        "{}    load-server-state-from-file global\n",
        support::haproxy::DEFAULT_DEFAULTS
    ));
    c.master_worker()
}

fn reconciler(h: &Haproxy, backends: &[&str]) -> ReconcilerHandle {
    let mut c = ReconcilerConfig::new(
        h.admin_socket().display().to_string(),
        backends.iter().map(|b| b.to_string()).collect(),
    );
    c.resync_interval = Duration::from_millis(200);
    c.server_state_file = Some(h.dir().join("server-state"));
    spawn_reconciler(c)
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

/// Member → slot of the members in ready slots that HAProxy reports `UP`.
fn up_members(r: &ReconcilerHandle, backend: &str) -> BTreeMap<String, String> {
    r.status()
        .slots
        .iter()
        .filter(|s| s.backend == backend && s.haproxy_status == "UP" && s.state == SlotState::Ready)
        .filter_map(|s| s.member.clone().map(|m| (m, s.slot.clone())))
        .collect()
}

fn wait_up(r: &ReconcilerHandle, backend: &str, n: usize) -> BTreeMap<String, String> {
    wait_until(
        Duration::from_secs(15),
        &format!("{n} members UP in {backend}"),
        || {
            let up = up_members(r, backend);
            if up.len() == n {
                Ok(up)
            } else {
                Err(up)
            }
        },
    )
}

/// Waits until the state file shows every member of `members` running and ready (no drain,
/// no maint) at its address, i.e. a restarted HAProxy would put them in rotation at once.
fn wait_file_has(path: &Path, members: &[&HttpBackend]) {
    wait_until(
        Duration::from_secs(10),
        "the server-state file to list every member ready and running",
        || {
            let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
            let st = ServersState::parse(&text).map_err(|e| e.to_string())?;
            for m in members {
                let ok = st.servers.iter().any(|s| {
                    s.addr == Some(m.addr().ip())
                        && s.port == Some(m.addr().port())
                        && s.op_state == 2
                        && !s.in_maint()
                        && !s.draining()
                });
                if !ok {
                    return Err(format!("{} missing or not ready in:\n{text}", m.name()));
                }
            }
            Ok(())
        },
    )
}

/// HAProxy's own slots (`show stat`): member address → status, for filled slots.
fn haproxy_filled(h: &Haproxy, backend: &str) -> HashMap<String, String> {
    h.slots(backend)
        .into_iter()
        .filter(|r| !r.status().starts_with("MAINT"))
        .map(|r| (r.addr().to_string(), r.status().to_string()))
        .collect()
}

/// Waits until the reconciler has done `passes` passes against HAProxy worker `pid`.
fn wait_agent_sees(r: &ReconcilerHandle, pid: u32, passes: u64) {
    let start = wait_until(
        Duration::from_secs(10),
        "the agent to see the new HAProxy worker",
        || {
            let s = r.status();
            if s.haproxy_pid == Some(pid) {
                Ok(s.passes)
            } else {
                Err(s.haproxy_pid)
            }
        },
    );
    wait_until(Duration::from_secs(10), "more agent passes", || {
        let s = r.status();
        if s.passes >= start + passes && s.haproxy_pid == Some(pid) {
            Ok(())
        } else {
            Err(s.passes)
        }
    });
}

/// Every member slot stayed `ready` at the member's address (no maint/drain walk).
fn assert_never_walked(w: &SlotWatcher, slots: &BTreeMap<String, String>) {
    for (m, slot) in slots {
        let states = w.admin_states(slot);
        assert_eq!(
            states,
            vec!["ready".to_string()],
            "slot {slot} of {m} was walked: {:?}",
            w.history(slot)
        );
    }
}

#[test]
fn reloads_and_a_restart_under_load_lose_no_request_and_the_agent_sends_nothing() {
    let mut h = Haproxy::start(state_config("web", 6, ""));
    let fe = h.frontend_addr();
    let state = h.dir().join("server-state");
    let nodes: Vec<HttpBackend> = (1..=3)
        .map(|i| HttpBackend::start(&format!("rl-web{i}")))
        .collect();
    let rt = runtime();
    let _g = rt.enter();
    let r = reconciler(&h, &["web"]);
    r.set_desired("web", nodes.iter().map(member).collect());
    let placed = wait_up(&r, "web", 3);
    wait_file_has(&state, &nodes.iter().collect::<Vec<_>>());
    let before = r.status();
    assert!(before.server_state_writes >= 1);
    let watcher = SlotWatcher::start(&h.admin_socket(), "web");

    // ~200 req/s: 4 loops, one request every 20 ms each, new connection per request
    let loops: Vec<RequestLoop> = (0..4)
        .map(|_| {
            RequestLoop::start(
                fe,
                "/",
                LoopLimits {
                    interval: Duration::from_millis(18),
                    max_duration: Duration::from_secs(40),
                    ..LoopLimits::default()
                },
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // three master-worker reloads: USR2, the master CLI `reload`, USR2 again
    for (i, how) in ["USR2", "master CLI reload", "USR2"].iter().enumerate() {
        if *how == "USR2" {
            h.reload();
        } else {
            h.reload_via_master_cli();
        }
        let pid = h.pid();
        // the new worker has every member before the agent did anything
        let filled = haproxy_filled(&h, "web");
        for n in &nodes {
            assert!(
                filled.contains_key(&n.addr().to_string()),
                "reload {i} ({how}): {} not in the new worker's slots: {filled:?}",
                n.name()
            );
        }
        wait_agent_sees(&r, pid, 3);
        std::thread::sleep(Duration::from_millis(300));
    }
    let during_reloads: Vec<_> = loops.iter().map(|l| l.snapshot()).collect();

    // a full restart: stop, start
    h.restart();
    let pid = h.pid();
    let filled = haproxy_filled(&h, "web");
    for n in &nodes {
        assert!(
            filled
                .get(&n.addr().to_string())
                .is_some_and(|s| s.starts_with("UP")),
            "after the restart {} is not UP in HAProxy's own slots: {filled:?}",
            n.name()
        );
    }
    // every member serves again, while the agent has sent nothing
    let mut seen = std::collections::BTreeSet::new();
    wait_until(
        Duration::from_secs(5),
        "every member answering after the restart",
        || {
            if let Some(host) = http_get(fe, "/").ok().and_then(|r| r.backend_host()) {
                seen.insert(host);
            }
            if seen.len() == 3 {
                Ok(())
            } else {
                Err(seen.clone())
            }
        },
    );
    assert_eq!(
        r.status().applies,
        before.applies,
        "the agent sent commands before the members were served"
    );
    wait_agent_sees(&r, pid, 3);
    let stats: Vec<_> = loops.into_iter().map(RequestLoop::stop).collect();

    let after = r.status();
    assert_eq!(
        after.applies, before.applies,
        "runtime commands were sent for slots that already matched"
    );
    assert_eq!(after.drift_repairs, before.drift_repairs);
    assert!(after.haproxy_restarts >= 4, "{after:?}");
    assert_eq!(up_members(&r, "web"), placed, "a member moved");
    assert_never_walked(&watcher, &placed);
    let ok: u64 = during_reloads.iter().map(|s| s.ok).sum();
    let failed: u64 = during_reloads.iter().map(|s| s.failed).sum();
    let failures: Vec<_> = during_reloads
        .iter()
        .flat_map(|s| s.failures.clone())
        .collect();
    assert_eq!(failed, 0, "requests failed during reloads: {failures:?}");
    assert!(ok > 200, "too little load: {ok} requests");
    let total: u64 = stats.iter().map(|s| s.total()).sum();
    eprintln!(
        "reloads: {ok} ok, 0 failed; whole run {total} requests, {} failed (the restart's downtime)",
        stats.iter().map(|s| s.failed).sum::<u64>()
    );
    assert!(!h.log().contains("has no server available"), "{}", h.log());
    rt.block_on(r.shutdown());
}

#[test]
fn after_a_restart_from_a_stale_state_file_only_the_slots_that_differ_are_repaired() {
    let mut h = Haproxy::start(state_config("web", 6, ""));
    let state = h.dir().join("server-state");
    let nodes: Vec<HttpBackend> = ["st-a", "st-b", "st-c", "st-d"]
        .iter()
        .map(|n| HttpBackend::start(n))
        .collect();
    let rt = runtime();
    let _g = rt.enter();
    // agent 1 places a, b, c and writes the file, then stops
    let r1 = reconciler(&h, &["web"]);
    r1.set_desired("web", nodes[..3].iter().map(member).collect());
    let placed = wait_up(&r1, "web", 3);
    wait_file_has(&state, &nodes[..3].iter().collect::<Vec<_>>());
    rt.block_on(r1.shutdown());
    // HAProxy restarts from the file while the agent is down; c left meanwhile, d joined
    h.restart();
    let watcher = SlotWatcher::start(&h.admin_socket(), "web");
    let filled = haproxy_filled(&h, "web");
    assert_eq!(filled.len(), 3, "restored from the file: {filled:?}");
    let r2 = reconciler(&h, &["web"]);
    r2.set_desired(
        "web",
        vec![member(&nodes[0]), member(&nodes[1]), member(&nodes[3])],
    );
    let up = wait_up(&r2, "web", 3);
    assert_eq!(up.get("st-a"), placed.get("st-a"));
    assert_eq!(up.get("st-b"), placed.get("st-b"));
    assert!(up.contains_key("st-d"));
    // a and b were adopted as they were; c's slot was emptied; d was filled
    let kept: BTreeMap<String, String> = placed
        .iter()
        .filter(|(m, _)| *m != "st-c")
        .map(|(m, s)| (m.clone(), s.clone()))
        .collect();
    assert_never_walked(&watcher, &kept);
    let c_slot = &placed["st-c"];
    if up["st-d"] != *c_slot {
        watcher.wait_admin(c_slot, "maint", Duration::from_secs(5));
    }
    assert!(r2.status().applies >= 1);
    rt.block_on(r2.shutdown());
}

#[test]
fn a_reload_that_grows_the_slots_and_adds_a_backend_keeps_every_member_and_fills_the_new_ones() {
    let mut h = Haproxy::start(state_config("web", 20, ""));
    let state = h.dir().join("server-state");
    let nodes: Vec<HttpBackend> = (1..=22)
        .map(|i| HttpBackend::start(&format!("gr-web{i}")))
        .collect();
    let api = HttpBackend::start("gr-api1");
    let rt = runtime();
    let _g = rt.enter();
    let r = reconciler(&h, &["web", "api"]);
    r.set_desired("web", nodes.iter().map(member).collect());
    r.set_desired("api", vec![member(&api)]);
    let placed = wait_up(&r, "web", 20);
    wait_until(Duration::from_secs(5), "two members queued", || {
        let q = r.status().queue.get("web").cloned().unwrap_or_default();
        if q.len() == 2 {
            Ok(())
        } else {
            Err(q)
        }
    });
    let placed_nodes: Vec<&HttpBackend> = nodes
        .iter()
        .filter(|n| placed.contains_key(n.name()))
        .collect();
    wait_file_has(&state, &placed_nodes);
    let watcher = SlotWatcher::start(&h.admin_socket(), "web");

    // the operator grows web to 40 slots and adds backend api (before web: backend ids
    // shift, HAProxy matches the file's lines by name), then reloads
    let cfg = std::fs::read_to_string(h.config_path()).unwrap();
    let cfg = cfg
        .replace(
            "server-template web 1-20 ",
            "server-template web 1-40 ",
        )
        .replace(
            "\nbackend web\n",
            "\nbackend api\n    balance roundrobin\n    option httpchk GET /healthz\n    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2\n    server-template api 1-4 slot.invalid:9 check disabled init-addr last,127.0.0.1\n\nbackend web\n",
        );
    assert!(cfg.contains("1-40") && cfg.contains("backend api"));
    std::fs::write(h.config_path(), cfg).unwrap();
    h.reload();
    let filled = haproxy_filled(&h, "web");
    assert_eq!(filled.len(), 20, "the new worker restored: {filled:?}");

    let up = wait_up(&r, "web", 22);
    for (m, slot) in &placed {
        assert_eq!(up.get(m), Some(slot), "{m} moved");
    }
    let new_slots: Vec<u32> = up
        .iter()
        .filter(|(m, _)| !placed.contains_key(*m))
        .map(|(_, s)| s.trim_start_matches("web").parse().unwrap())
        .collect();
    assert_eq!(new_slots.len(), 2);
    assert!(
        new_slots.iter().all(|n| (21..=40).contains(n)),
        "{new_slots:?}"
    );
    assert_eq!(wait_up(&r, "api", 1).len(), 1);
    assert_never_walked(&watcher, &placed);
    rt.block_on(r.shutdown());
}

#[test]
fn the_agent_with_server_state_file_lets_a_reloaded_and_a_restarted_haproxy_serve_at_once() {
    use support::agent::{web_nodes, HaserfAgent, HaserfOptions};
    let mut h = Haproxy::start(state_config("web", 5, ""));
    let state = h.dir().join("server-state");
    let nodes = web_nodes(3, "sa-web");
    let names: Vec<&str> = nodes.iter().map(|n| n.name()).collect();
    let agent = HaserfAgent::start(
        HaserfOptions::manager("sa-lb1", &h.admin_socket(), "web")
            .join(nodes[0].serf.bind_addr())
            .args(&["--server-state-file", &state.display().to_string()]),
    );
    let serving = agent.wait_serving(&names, Duration::from_secs(15));
    let apps: Vec<&HttpBackend> = nodes.iter().map(|n| &n.app).collect();
    wait_file_has(&state, &apps);
    let st = agent.status();
    assert!(
        st["haproxy"]["server_state_writes"].as_u64().unwrap() >= 1,
        "{st}"
    );
    let applies = st["haproxy"]["applies"].clone();
    let watcher = SlotWatcher::start(&h.admin_socket(), "web");
    for step in ["reload", "restart"] {
        if step == "reload" {
            h.reload();
        } else {
            h.restart();
        }
        let pid = h.pid();
        let filled = haproxy_filled(&h, "web");
        for n in &nodes {
            assert!(
                filled
                    .get(&n.app_addr().to_string())
                    .is_some_and(|s| s.starts_with("UP")),
                "{step}: {} not UP in HAProxy's own slots: {filled:?}",
                n.name()
            );
        }
        wait_until(
            Duration::from_secs(10),
            "the agent to see the new worker and pass again",
            || {
                let st = agent.status();
                if st["haproxy"]["pid"] == pid && st["ready"] == true {
                    Ok(())
                } else {
                    Err(st["haproxy"]["pid"].clone())
                }
            },
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            agent.status()["haproxy"]["applies"],
            applies,
            "{step}: the agent sent commands for slots that already matched"
        );
    }
    assert_eq!(agent.wait_serving(&names, Duration::from_secs(5)), serving);
    let slots: BTreeMap<String, String> = serving.into_iter().collect();
    assert_never_walked(&watcher, &slots);
}

#[test]
fn a_state_file_that_cannot_be_written_is_reported_and_the_slots_are_still_filled() {
    let h = Haproxy::start(state_config("web", 3, ""));
    let node = HttpBackend::start("sf-err1");
    let rt = runtime();
    let _g = rt.enter();
    let mut c = ReconcilerConfig::new(h.admin_socket().display().to_string(), vec!["web".into()]);
    c.server_state_file = Some(h.dir().join("missing-dir").join("server-state"));
    let r = spawn_reconciler(c);
    r.set_desired("web", vec![member(&node)]);
    wait_up(&r, "web", 1);
    let err = wait_until(Duration::from_secs(5), "the write error reported", || {
        let s = r.status();
        s.server_state_error.clone().ok_or(s.server_state_writes)
    });
    assert!(err.contains("missing-dir"), "{err}");
    assert_eq!(r.status().server_state_writes, 0);
    assert!(!h.dir().join("missing-dir").exists());
    rt.block_on(r.shutdown());
}
