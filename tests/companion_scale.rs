//! The companion at size, against a real HAProxy at its default `tune.bufsize`: a
//! 1,000-slot template filled by 1,000 members with 40-character names (and one failed
//! member), X-Served-By from the agent's `served-by` map and from the Lua fetch, the Lua
//! status page, and the SPOE facts (the shipped spoe.conf) — none of them may depend on a
//! reply fitting one buffer or one SPOE frame. Also `max-frame-size 256`: the pinned-node
//! rule still lets an alive node through, and the cut lists are flagged and counted.
//!
//! The agent side is the test fixture's (`companion_fixture`): the real status-socket
//! server, the real map task and the real SPOE agent reading one cluster view.

mod companion_fixture;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use companion_fixture::*;
use haserf::control::model::MemberStatus;
use haserf::maps::{MapKind, MapSpec, MapSyncHandle};
use haserf::spoe::SpoeMetrics;
use serde_json::Value;
use support::*;

const SLOTS: usize = 1000;
const WAIT: Duration = Duration::from_secs(30);

/// Member `i`'s name: 40 characters.
fn name(i: usize) -> String {
    let n = format!("scale-member-{i:04}-{}", "y".repeat(22));
    assert_eq!(n.len(), 40);
    n
}

const FAILED: &str = "a-failed-member-with-a-forty-char-name-x";

/// One 1,000-server HAProxy at a time: in parallel they compete for the CPU with their
/// agents, and SPOE's 200 ms `timeout processing` is not what these tests measure.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Scale {
    h: Haproxy,
    _agent: FakeAgent,
    _maps: MapSyncHandle,
    spoe_metrics: Arc<SpoeMetrics>,
    /// slot → member, as the agent placed them.
    placed: BTreeMap<String, String>,
    _web: Vec<HttpBackend>,
    _dir: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The shipped spoe.conf with `extra` lines added to its `spoe-agent` section and its
/// timeouts relaxed.
fn spoe_conf(dir: &Path, extra: &str) -> PathBuf {
    let shipped = std::fs::read_to_string(repo_file("haproxy/spoe.conf")).unwrap();
    let agent = "spoe-agent haserf-agent\n";
    assert!(
        shipped.contains(agent),
        "the shipped spoe.conf names {agent}"
    );
    let mut edited = shipped.replacen(agent, &format!("{agent}{extra}"), 1);
    // what is checked here is what the answers hold, not latency: the shipped timeouts
    // (fail fast in production) would turn a busy test machine's delays into errors
    for (tight, loose) in [
        ("timeout hello 500ms", "timeout hello 5s"),
        ("timeout processing 200ms", "timeout processing 5s"),
    ] {
        assert!(edited.contains(tight), "the shipped spoe.conf sets {tight}");
        edited = edited.replace(tight, loose);
    }
    let path = dir.join("spoe.conf");
    std::fs::write(&path, edited).unwrap();
    path
}

/// HAProxy with `server-template web 1-1000`, every slot filled by one of 1,000 alive
/// members (the slots point at four web servers), the `served-by` map kept by the real map
/// task, the Lua script, and the SPOE engine (`spoe_extra` added to its agent section,
/// `global_extra` to HAProxy's global section).
fn scale(spoe_extra: &str, global_extra: &str) -> Scale {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::Builder::new()
        .prefix("haserf-scale-")
        .tempdir()
        .unwrap();
    let served_by = dir.path().join("served-by.map");
    std::fs::write(&served_by, "").unwrap();
    let sock = dir.path().join("haserf.sock");
    let web: Vec<HttpBackend> = (0..4)
        .map(|i| HttpBackend::start(&format!("w{i}")))
        .collect();

    let view = Arc::new(SharedView::default());
    let mut members: Vec<_> = (0..SLOTS)
        .map(|i| {
            member(
                &name(i),
                &[("role", "web"), ("zone", &format!("z{}", i % 3))],
                MemberStatus::Alive,
            )
        })
        .collect();
    members.push(member(FAILED, &[("role", "web")], MemberStatus::Failed));
    view.set_members(members);
    let mut placed = BTreeMap::new();
    for i in 0..SLOTS {
        let slot = format!("web{}", i + 1);
        view.set_slot(filled(&slot, &name(i), web[i % web.len()].addr()));
        placed.insert(slot, name(i));
    }
    let agent = FakeAgent::new(sock.clone(), view.clone());
    let (spoe, spoe_metrics) = agent.start_spoe();

    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let cfg = HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    filter spoe engine haserf config {spoe_conf}
    http-request send-spoe-group haserf haserf-backend-facts
    http-request use-service lua.haserf-status if {{ path /haserf }}
    http-request deny deny_status 403 if {{ req.hdr(x-haserf-node) -m found }} !{{ var(txn.haserf.node_alive) -m bool }}
    http-response set-var-fmt(txn.haserf_slot) %[be_name]/%[srv_name]
    http-response set-header X-Served-By %[var(txn.haserf_slot),map({served})]
    http-response set-header X-Served-By-Lua %[lua.haserf_node]
    http-response set-header X-Slot %[srv_name]
    http-response set-header X-Haserf-Live %[var(txn.haserf.backend_live)]
    http-response set-header X-Haserf-Node-Status %[var(txn.haserf.node_status)]
    http-response set-header X-Haserf-Members-Len %[var(txn.haserf.backend_members),length]
    http-response set-header X-Haserf-Members-Truncated %[var(txn.haserf.backend_members_truncated)]
    http-response set-header X-Haserf-Error %[var(txn.haserf.error)]
    default_backend web

backend web
    balance roundrobin
    server-template web 1-{SLOTS} 127.0.0.1:9 disabled

backend haserf-spoe
    mode tcp
    option spop-check
    timeout connect 2s
    timeout server 1m
    server haserf {spoe} check inter 500ms
",
        spoe_conf = spoe_conf(dir.path(), spoe_extra).display(),
        served = served_by.display(),
    ))
    .global(&format!(
        "    setenv HASERF_STATUS_SOCKET {}\n    setenv HASERF_REFRESH_MS 300\n    lua-load {}\n{global_extra}",
        sock.display(),
        repo_file("lua/haserf.lua")
    ));
    let h = Haproxy::start(cfg);

    // fill HAProxy's slots as the agent does, 25 slots per command line
    let slots: Vec<usize> = (0..SLOTS).collect();
    for batch in slots.chunks(25) {
        let line: Vec<String> = batch
            .iter()
            .map(|i| {
                let slot = format!("web{}", i + 1);
                let a = web[i % web.len()].addr();
                format!(
                    "set server web/{slot} addr {} port {}; set server web/{slot} state ready",
                    a.ip(),
                    a.port()
                )
            })
            .collect();
        let reply = h.cmd(&line.join("; "));
        assert_eq!(reply.matches("IP changed").count(), batch.len(), "{reply}");
    }
    // no health checks: a ready slot shows "no check" in `show stat`
    wait_until(WAIT, "every slot in service", || {
        let up = h
            .slots("web")
            .iter()
            .filter(|r| r.status() == "no check")
            .count();
        if up == SLOTS {
            Ok(())
        } else {
            Err(up)
        }
    });
    let maps = agent.start_maps(
        &h.admin_socket(),
        vec![MapSpec {
            kind: MapKind::ServedBy,
            path: served_by.clone(),
        }],
    );
    wait_until(WAIT, "the served-by map to hold every slot", || {
        let n = h
            .cmd(&format!("show map {}", served_by.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        if n == SLOTS {
            Ok(())
        } else {
            Err(n)
        }
    });
    Scale {
        h,
        _agent: agent,
        _maps: maps,
        spoe_metrics,
        placed,
        _web: web,
        _dir: dir,
        _turn: turn,
    }
}

impl Scale {
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        get_with(self.h.frontend_addr(), path, headers)
    }

    /// The member the agent placed in the slot that answered `r`.
    fn placed_for(&self, r: &HttpResponse) -> &str {
        let slot = r.header("x-slot").expect("X-Slot");
        self.placed.get(slot).map_or("", String::as_str)
    }
}

#[track_caller]
fn assert_no_alerts(h: &Haproxy) {
    let log = h.log();
    assert!(
        !log.contains("ALERT") && !log.contains("runtime error"),
        "HAProxy log:\n{log}"
    );
}

#[test]
fn x_served_by_is_right_on_every_response_across_a_thousand_slots_from_the_map_and_the_lua_fetch() {
    let s = scale("", "");
    // the Lua table is read in pages; wait for its first complete refresh
    wait_until(WAIT, "the Lua fetch to know the slots", || {
        let r = s.get("/", &[]);
        match r.header("x-served-by-lua") {
            Some(by) if !by.is_empty() && by == s.placed_for(&r) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..SLOTS {
        let r = s.get("/", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let want = s.placed_for(&r);
        assert_eq!(r.header("x-served-by"), Some(want), "{:?}", r.headers);
        assert_eq!(r.header("x-served-by-lua"), Some(want), "{:?}", r.headers);
        seen.insert(r.header("x-slot").unwrap().to_string());
    }
    assert_eq!(seen.len(), SLOTS, "round robin visits every slot");
    assert_no_alerts(&s.h);
}

#[test]
fn the_status_page_answers_200_in_html_and_json_for_a_thousand_slots_and_members() {
    let s = scale("", "");
    let t = Instant::now();
    let r = s.get("/haserf?format=json", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), SLOTS + 1);
    let web = &v["backends"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["used"], SLOTS);
    assert_eq!(web["free"], 0);
    let slots = web["slots"].as_array().unwrap();
    assert_eq!(slots.len(), SLOTS);
    for sl in slots {
        let slot = sl["slot"].as_str().unwrap();
        assert_eq!(sl["member"].as_str(), Some(s.placed[slot].as_str()));
        assert_eq!(sl["live_status"], "no check", "{sl}");
    }
    let html = s.get("/haserf", &[]);
    assert_eq!(html.status, 200, "{}", html.body);
    assert!(html.body.contains(&name(SLOTS - 1)));
    assert!(html.body.contains(FAILED));

    assert!(
        t.elapsed() < Duration::from_secs(10),
        "two pages took {:?}",
        t.elapsed()
    );
    assert_no_alerts(&s.h);
}

#[test]
fn spoe_node_alive_and_backend_live_stay_right_for_a_thousand_members_at_the_default_frame() {
    let s = scale("", "");
    let alive = name(SLOTS / 2);
    wait_until(WAIT, "the SPOE agent to answer", || {
        let r = s.get("/", &[("x-haserf-node", &alive)]);
        match (r.status, r.header("x-haserf-node-status")) {
            (200, Some("alive")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    for _ in 0..20 {
        let r = s.get("/", &[("x-haserf-node", &alive)]);
        assert_eq!(r.status, 200, "a pinned alive node is allowed: {}", r.body);
        assert_eq!(r.header("x-haserf-node-status"), Some("alive"));
        assert_eq!(r.header("x-haserf-live"), Some("1000"));
        // 1,000 names (41 KB) do not fit the default frame: cut and flagged, not dropped
        assert_eq!(r.header("x-haserf-members-truncated"), Some("1"));
        let len: usize = r.header("x-haserf-members-len").unwrap().parse().unwrap();
        assert!(
            len > 10_000 && len < 16_384,
            "backend_members is {len} bytes"
        );
    }
    let r = s.get("/", &[("x-haserf-node", FAILED)]);
    assert_eq!(r.status, 403, "a pinned failed node is refused");
    assert!(s.spoe_metrics.truncated.load(Ordering::Relaxed) > 0);
    assert_no_alerts(&s.h);
}

#[test]
fn with_max_frame_size_256_a_pinned_alive_node_is_allowed_and_the_cut_is_flagged_and_counted() {
    let s = scale("    max-frame-size 256\n", "");
    let alive = name(7);
    wait_until(WAIT, "the SPOE agent to answer", || {
        let r = s.get("/", &[("x-haserf-node", &alive)]);
        match (r.status, r.header("x-haserf-node-status")) {
            (200, Some("alive")) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let before = s.spoe_metrics.truncated.load(Ordering::Relaxed);
    for _ in 0..20 {
        let r = s.get("/", &[("x-haserf-node", &alive)]);
        assert_eq!(r.status, 200, "the pinned-node rule allows an alive node");
        assert_eq!(r.header("x-haserf-node-status"), Some("alive"));
        assert_eq!(r.header("x-haserf-live"), Some("1000"), "{:?}", r.headers);
        assert_eq!(r.header("x-haserf-members-truncated"), Some("1"));
        let len: usize = r.header("x-haserf-members-len").unwrap().parse().unwrap();
        assert!(len < 256, "backend_members is {len} bytes");
    }
    assert!(
        s.spoe_metrics.truncated.load(Ordering::Relaxed) >= before + 20,
        "one count per cut answer"
    );
    let r = s.get("/", &[("x-haserf-node", FAILED)]);
    assert_eq!(r.status, 403, "a pinned failed node is still refused");
    assert_no_alerts(&s.h);
}

#[test]
fn the_agent_takes_the_larger_frame_haproxy_offers_with_a_larger_tune_bufsize() {
    let s = scale("", "    tune.bufsize 65536\n");
    let full = SLOTS * 40 + (SLOTS - 1);
    wait_until(WAIT, "the whole member list in one frame", || {
        let r = s.get("/", &[]);
        match (
            r.header("x-haserf-members-len"),
            r.header("x-haserf-members-truncated"),
        ) {
            (Some(len), Some("")) if len == full.to_string() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(s.spoe_metrics.truncated.load(Ordering::Relaxed), 0);
    assert_no_alerts(&s.h);
}
