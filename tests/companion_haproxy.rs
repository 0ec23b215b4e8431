//! The HAProxy-side companion against a real HAProxy: the Lua script (lua/haserf.lua: status
//! service and `lua.haserf_node`) and the SPOE agent (src/spoe, engine `haserf` from the
//! shipped haproxy/spoe.conf).
//!
//! The data source is pluggable: the fake agent of `companion_fixture` serves a
//! [`ClusterView`] on the real status socket server (`control::server`) and the SPOE agent
//! reads the same view. The end-to-end test with real serf members swaps in the real agent.

mod companion_fixture;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use companion_fixture::*;
use haserf::control::model::{MemberStatus, MembersReply};
use haserf::spoe::{ClusterView, SpoeMetrics};
use serde_json::{json, Value};
use support::*;

/// HAProxy wired like haproxy/companion.cfg: lua-load, setenv, the status service, the
/// X-Served-By fetch, the shipped spoe.conf, and headers showing the SPOE variables.
fn companion_haproxy(status_socket: &Path, spoe: SocketAddr, global_extra: &str) -> Haproxy {
    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let cfg = HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    filter spoe engine haserf config {spoe_conf}
    http-request send-spoe-group haserf haserf-backend-facts
    http-response send-spoe-group haserf haserf-server-facts
    http-request use-service lua.haserf-status if {{ path /haserf }}
    http-request deny deny_status 403 if {{ req.hdr(x-haserf-node) -m found }} !{{ var(txn.haserf.node_alive) -m bool }}
    http-response set-header X-Served-By %[lua.haserf_node]
    http-response set-header X-Haserf-Node %[var(txn.haserf.server_node)]
    http-response set-header X-Haserf-Tags %[var(txn.haserf.server_tags)]
    http-response set-header X-Haserf-Tag %[var(txn.haserf.server_tag)]
    http-response set-header X-Haserf-Live %[var(txn.haserf.backend_live)]
    http-response set-header X-Haserf-Members %[var(txn.haserf.backend_members)]
    http-response set-header X-Haserf-Node-Status %[var(txn.haserf.node_status)]
    http-response set-header X-Haserf-Node-Tags %[var(txn.haserf.node_tags)]
    http-response set-header X-Haserf-Node-Tag %[var(txn.haserf.node_tag)]
    http-response set-header X-Haserf-Error %[var(txn.haserf.error)]
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template web 1-3 127.0.0.1:9 check disabled

backend haserf-spoe
    mode tcp
    option spop-check
    timeout connect 2s
    timeout server 1m
    server haserf {spoe} check inter 500ms
",
        spoe_conf = repo_file("haproxy/spoe.conf"),
    ))
    .global(&format!(
        "    setenv HASERF_STATUS_SOCKET {}\n    setenv HASERF_REFRESH_MS 100\n    {} {}\n{global_extra}",
        status_socket.display(),
        if global_extra.contains("nbthread") {
            "lua-load-per-thread"
        } else {
            "lua-load"
        },
        repo_file("lua/haserf.lua")
    ));
    Haproxy::start(cfg)
}

/// Puts `backend` into HAProxy slot `web/<slot>` the way the agent would.
fn fill_slot(h: &Haproxy, slot: &str, backend: &HttpBackend) {
    fill_slot_in(h, "web", slot, backend);
}

fn free_slot(h: &Haproxy, slot: &str) {
    let reply = h.cmd(&format!("set server web/{slot} state maint"));
    assert!(reply.trim().is_empty(), "reply: {reply:?}");
}

struct Setup {
    h: Haproxy,
    agent: FakeAgent,
    view: Arc<SharedView>,
    spoe_addr: SocketAddr,
    spoe_metrics: Arc<SpoeMetrics>,
    alpha: HttpBackend,
    beta: HttpBackend,
    _dir: tempfile::TempDir,
}

/// HAProxy + fake agent (status socket and SPOE) + two web nodes, `alpha` in slot web1.
fn setup() -> Setup {
    setup_with("")
}

/// [`setup`] with extra lines in HAProxy's global section.
fn setup_with(global_extra: &str) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("haserf-companion-")
        .tempdir()
        .unwrap();
    let sock = dir.path().join("haserf.sock");
    let alpha = HttpBackend::start("alpha");
    let beta = HttpBackend::start("beta");
    let view = Arc::new(SharedView::default());
    view.set_members(vec![
        member(
            "alpha",
            &[("role", "web"), ("zone", "a"), ("note", "<b>&")],
            MemberStatus::Alive,
        ),
        member(
            "beta",
            &[("role", "web"), ("zone", "b")],
            MemberStatus::Alive,
        ),
        member("gamma", &[("role", "web")], MemberStatus::Failed),
    ]);
    view.set_slot(filled("web1", "alpha", alpha.addr()));
    view.set_slot(free("web2"));
    view.set_slot(free("web3"));
    let agent = FakeAgent::new(sock.clone(), view.clone());
    let (spoe_addr, spoe_metrics) = agent.start_spoe();
    let h = companion_haproxy(&sock, spoe_addr, global_extra);
    fill_slot(&h, "web1", &alpha);
    Setup {
        h,
        agent,
        view,
        spoe_addr,
        spoe_metrics,
        alpha,
        beta,
        _dir: dir,
    }
}

const WAIT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------------------------
// Lua: the status service
// ------------------------------------------------------------------------------------------

fn status_json(s: &Setup, headers: &[(&str, &str)], path: &str) -> Value {
    let r = get_with(s.h.frontend_addr(), path, headers);
    assert_eq!(r.status, 200, "body: {}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

#[test]
fn the_status_page_lists_members_and_slots_with_haproxy_live_status_as_json() {
    let s = setup();
    let v = status_json(&s, &[], "/haserf?format=json");
    let members = v["members"].as_array().unwrap();
    let names: Vec<&str> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    assert_eq!(members[0]["tags"]["zone"], "a");
    assert_eq!(members[0]["status"], "alive");
    assert_eq!(members[2]["status"], "failed");
    assert_eq!(members[2]["tags"], json!({"role": "web"}));

    let backends = v["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 1);
    assert_eq!(backends[0]["name"], "web");
    assert_eq!(backends[0]["used"], 1);
    assert_eq!(backends[0]["free"], 2);
    let slots = backends[0]["slots"].as_array().unwrap();
    let by: Vec<(&str, Option<&str>, &str)> = slots
        .iter()
        .map(|s| {
            (
                s["slot"].as_str().unwrap(),
                s["member"].as_str(),
                s["live_status"].as_str().unwrap(),
            )
        })
        .collect();
    // live_status is read by Lua from HAProxy itself, not from the agent; free slots are
    // counted, not listed
    assert_eq!(by, [("web1", Some("alpha"), "UP")]);
    assert_eq!(slots[0]["live_addr"], s.alpha.addr().to_string());
    assert_eq!(slots[0]["member_status"], "alive");
    assert_eq!(v["status"]["slots_used"], 1);
}

/// Adds `n` members with 40-character names; returns the size of the unpaged members reply.
fn add_bulk_members(s: &Setup, n: usize) -> usize {
    let mut members = s.view.members();
    for i in 0..n {
        let name = format!("bulk-node-{i:04}-{}", "x".repeat(25));
        assert_eq!(name.len(), 40);
        members.push(member(
            &name,
            &[("role", "batch"), ("rack", &format!("r{}", i % 17))],
            MemberStatus::Alive,
        ));
    }
    s.view.set_members(members);
    serde_json::to_string(&MembersReply {
        members: s.view.members(),
    })
    .unwrap()
    .len()
}

#[test]
fn the_status_page_lists_a_thousand_members_at_the_default_buffer_size() {
    let s = setup();
    let len = add_bulk_members(&s, 997);
    assert!(len > 100_000, "members reply is {len} bytes unpaged");
    let t = std::time::Instant::now();
    let v = status_json(&s, &[], "/haserf?format=json");
    assert_eq!(v["members"].as_array().unwrap().len(), 1000);
    let html = get_with(s.h.frontend_addr(), "/haserf", &[]);
    assert_eq!(html.status, 200, "{}", html.body);
    assert!(html
        .body
        .contains(&format!("bulk-node-0996-{}", "x".repeat(25))));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "two pages took {:?}",
        t.elapsed()
    );
}

/// Framed replies lift the buffer limit even from an agent that sends a whole list in one
/// reply: the page reads it in pieces. (An agent older than framed replies answers 503
/// naming `tune.bufsize` at once: tests/companion_lua_errors.rs.)
#[test]
fn an_agent_that_does_not_page_still_fills_the_page_through_framed_replies() {
    let s = setup();
    s.view
        .no_paging
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let len = add_bulk_members(&s, 400);
    assert!(len > 40_000, "members reply is {len} bytes");
    let t = std::time::Instant::now();
    let v = status_json(&s, &[], "/haserf?format=json");
    assert_eq!(v["members"].as_array().unwrap().len(), 403);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // the fetch table (used slots only) is unaffected
    wait_served_by(&s, "alpha");
}

#[test]
fn the_status_page_answers_json_for_an_accept_header() {
    let s = setup();
    let v = status_json(&s, &[("accept", "text/plain, application/json")], "/haserf");
    assert_eq!(v["members"].as_array().unwrap().len(), 3);
}

#[test]
fn the_status_page_serves_escaped_html_for_people() {
    let s = setup();
    let r = get_with(s.h.frontend_addr(), "/haserf", &[("accept", "text/html")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(r.body.len())
    );
    assert!(r.body.starts_with("<!DOCTYPE html>"), "{}", r.body);
    for needle in [
        "alpha",
        "beta",
        "gamma",
        "Backend web",
        "web1",
        "2 free",
        ">UP<",
    ] {
        assert!(r.body.contains(needle), "{needle} missing from {}", r.body);
    }
    assert!(r.body.contains("note=&lt;b&gt;&amp;"), "tags escaped");
    assert!(!r.body.contains("<b>&"), "raw tag value must not appear");
    assert!(
        !r.body.contains("http://") && !r.body.contains("https://"),
        "self-contained"
    );
}

#[test]
fn the_status_service_answers_503_while_the_agent_is_down_and_recovers() {
    let mut s = setup();
    assert_eq!(get_with(s.h.frontend_addr(), "/haserf", &[]).status, 200);
    s.agent.stop();
    let r = wait_until(WAIT, "the status page to answer 503", || {
        let r = get_with(s.h.frontend_addr(), "/haserf?format=json", &[]);
        if r.status == 503 {
            Ok(r)
        } else {
            Err(r.status)
        }
    });
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"], "haserf agent unavailable");
    assert!(
        v["detail"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );
    let html = get_with(s.h.frontend_addr(), "/haserf", &[]);
    assert_eq!(html.status, 503);
    assert!(html.body.contains("haserf agent unavailable"));
    // HAProxy keeps serving traffic meanwhile
    let t = std::time::Instant::now();
    let r = http_get(s.h.frontend_addr(), "/").unwrap();
    assert_eq!(r.backend_host().as_deref(), Some("alpha"));
    assert!(t.elapsed() < Duration::from_secs(2));

    s.agent.start();
    wait_until(WAIT, "the status page to recover", || {
        match get_with(s.h.frontend_addr(), "/haserf", &[]).status {
            200 => Ok(()),
            other => Err(other),
        }
    });
}

// ------------------------------------------------------------------------------------------
// Lua: X-Served-By
// ------------------------------------------------------------------------------------------

/// Requests `/` until `want` answers with X-Served-By = `want`; every response on the way
/// must name either nobody or the node that really answered.
fn wait_served_by(s: &Setup, want: &str) {
    wait_until(WAIT, &format!("X-Served-By: {want}"), || {
        let r = http_get(s.h.frontend_addr(), "/").map_err(|e| e.to_string())?;
        let host = r.backend_host().unwrap_or_default();
        let by = r.header("x-served-by").unwrap_or("").to_string();
        assert!(
            by.is_empty() || by == host,
            "X-Served-By names {by:?} but {host:?} answered"
        );
        if host == want && by == want {
            Ok(())
        } else {
            Err(format!("answered by {host:?}, X-Served-By {by:?}"))
        }
    });
}

#[test]
fn x_served_by_names_the_node_that_answered_also_after_its_slot_is_reused() {
    let s = setup();
    wait_served_by(&s, "alpha");

    // alpha leaves: slot freed (HAProxy first, then the agent's view, as the agent does)
    free_slot(&s.h, "web1");
    s.view.set_slot(free("web1"));
    // beta takes the same slot
    fill_slot(&s.h, "web1", &s.beta);
    s.view.set_slot(filled("web1", "beta", s.beta.addr()));
    wait_served_by(&s, "beta");
    let r = http_get(s.h.frontend_addr(), "/").unwrap();
    assert_eq!(r.header("x-served-by"), Some("beta"));
}

#[test]
fn x_served_by_never_names_the_previous_node_while_the_map_is_stale() {
    let mut s = setup();
    wait_served_by(&s, "alpha");
    // the agent is gone, so the map cannot follow; HAProxy's slot moves to beta anyway
    s.agent.stop();
    fill_slot(&s.h, "web1", &s.beta);
    for _ in 0..20 {
        let r = http_get(s.h.frontend_addr(), "/").unwrap();
        assert_eq!(r.backend_host().as_deref(), Some("beta"));
        assert_eq!(
            r.header("x-served-by"),
            Some(""),
            "stale map must not name alpha"
        );
    }
}

// ------------------------------------------------------------------------------------------
// SPOE
// ------------------------------------------------------------------------------------------

#[test]
fn haproxy_health_checks_the_spoe_agent_with_hello_frames() {
    let s = setup();
    wait_until(WAIT, "the SPOE server to be UP in HAProxy", || {
        let rows = s.h.show_stat();
        let row = rows
            .iter()
            .find(|r| r.proxy() == "haserf-spoe" && r.server() == "haserf")
            .expect("haserf-spoe/haserf in show stat");
        if row.status() == "UP" {
            Ok(())
        } else {
            Err(row.status().to_string())
        }
    });
    assert!(SpoeMetrics::get(&s.spoe_metrics.healthchecks) > 0);
    assert_eq!(SpoeMetrics::get(&s.spoe_metrics.rejected), 0);
}

#[test]
fn spoe_variables_appear_in_response_headers() {
    let s = setup();
    let r = wait_until(WAIT, "SPOE variables in the response", || {
        let r = get_with(s.h.frontend_addr(), "/", &[]);
        match r.header("x-haserf-node") {
            Some("alpha") => Ok(r),
            _ => Err(r.headers),
        }
    });
    assert_eq!(r.backend_host().as_deref(), Some("alpha"));
    assert_eq!(r.header("x-haserf-tags"), Some("note=<b>&,role=web,zone=a"));
    assert_eq!(r.header("x-haserf-tag"), Some("a"), "tag=str(zone)");
    assert_eq!(r.header("x-haserf-live"), Some("1"));
    assert_eq!(r.header("x-haserf-members"), Some("alpha"));
    assert_eq!(r.header("x-haserf-error"), Some(""));
    assert!(SpoeMetrics::get(&s.spoe_metrics.hellos) > 0);
    assert!(SpoeMetrics::get(&s.spoe_metrics.notifies) >= 2);
}

#[test]
fn an_acl_on_a_spoe_variable_refuses_a_request_pinned_to_a_failed_node() {
    let s = setup();
    let r = wait_until(WAIT, "SPOE to answer", || {
        let r = get_with(s.h.frontend_addr(), "/", &[("x-haserf-node", "beta")]);
        match (r.status, r.header("x-haserf-node-status")) {
            (200, Some("alive")) => Ok(r),
            other => Err(format!("{other:?}")),
        }
    });
    // a member's tags by name, at request time
    assert_eq!(r.header("x-haserf-node-tags"), Some("role=web,zone=b"));
    assert_eq!(r.header("x-haserf-node-tag"), Some("b"));
    let r = get_with(s.h.frontend_addr(), "/", &[("x-haserf-node", "gamma")]);
    assert_eq!(r.status, 403, "gamma failed: {:?}", r.headers);
    let r = get_with(s.h.frontend_addr(), "/", &[("x-haserf-node", "nobody")]);
    assert_eq!(r.status, 403, "unknown node");
}

/// Sends `bytes` on a fresh connection to the SPOE port and returns everything the agent
/// answered before closing.
fn poke(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(bytes).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out)
        .expect("the agent closes the connection");
    out
}

fn disconnect_status(reply: &[u8]) -> u64 {
    use haserf::spoe::codec::{kv_get, Frame};
    let raw = haserf::spoe::codec::parse_frame_body(&reply[4..]).expect("a frame");
    match Frame::from_raw(&raw).unwrap() {
        Some(Frame::AgentDisconnect(kv)) => kv_get(&kv, "status-code").unwrap().as_u64().unwrap(),
        other => panic!("expected AGENT-DISCONNECT, got {other:?}"),
    }
}

#[test]
fn garbage_sent_to_the_spoe_port_disturbs_neither_haproxy_nor_the_agent() {
    let s = setup();
    let pid = s.h.pid();
    // an HTTP request: "GET " as a length is far above max-frame-size → status 3
    let reply = poke(s.spoe_addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(disconnect_status(&reply), 3);
    // a well-sized frame of nonsense → status 4 (invalid frame)
    let reply = poke(s.spoe_addr, &[0, 0, 0, 9, 1, 0, 0, 0, 1, 0, 0, 0xff, 0xff]);
    assert_eq!(disconnect_status(&reply), 4);
    // a NOTIFY before any HELLO → status 4
    let notify = haserf::spoe::codec::Frame::Notify {
        stream_id: 1,
        frame_id: 1,
        messages: vec![],
    };
    assert_eq!(disconnect_status(&poke(s.spoe_addr, &notify.to_bytes())), 4);
    // a truncated frame, then the peer goes away: nothing to answer, nothing breaks
    let mut c = TcpStream::connect(s.spoe_addr).unwrap();
    c.write_all(&[0, 0, 1]).unwrap();
    drop(c);
    // many random blobs
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..50 {
        let blob: Vec<u8> = (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let reply = poke(s.spoe_addr, &blob);
        assert!(
            reply.is_empty() || reply.len() >= 11,
            "either waits for more or says goodbye"
        );
    }
    assert!(SpoeMetrics::get(&s.spoe_metrics.rejected) >= 3);

    // HAProxy and the agent are fine: SPOE still answers real traffic
    wait_until(WAIT, "SPOE variables after the garbage", || {
        let r = get_with(s.h.frontend_addr(), "/", &[]);
        match r.header("x-haserf-node") {
            Some("alpha") => Ok(()),
            _ => Err(r.headers),
        }
    });
    assert_eq!(s.h.pid(), pid, "HAProxy did not restart");
}

#[test]
fn spoe_answers_every_request_under_concurrent_load() {
    let s = setup();
    wait_until(WAIT, "SPOE to answer", || {
        match get_with(s.h.frontend_addr(), "/", &[]).header("x-haserf-node") {
            Some("alpha") => Ok(()),
            other => Err(other.map(str::to_string)),
        }
    });
    let before = SpoeMetrics::get(&s.spoe_metrics.notifies);
    let addr = s.h.frontend_addr();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpClient::new(addr);
                let mut missing = 0;
                for _ in 0..50 {
                    let r = c.get("/").expect("request through HAProxy");
                    if r.header("x-haserf-node") != Some("alpha")
                        || r.header("x-haserf-live") != Some("1")
                    {
                        missing += 1;
                    }
                }
                missing
            })
        })
        .collect();
    let missing: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(missing, 0, "responses without SPOE variables");
    // two events (request + response) per request
    assert!(SpoeMetrics::get(&s.spoe_metrics.notifies) - before >= 800);
    assert_eq!(SpoeMetrics::get(&s.spoe_metrics.rejected), 0);
}

#[test]
fn a_hung_agent_makes_the_status_page_503_after_the_timeout_while_traffic_flows() {
    let mut s = setup();
    s.agent.stop();
    // something accepts on the status socket but never answers
    let hung = std::os::unix::net::UnixListener::bind(&s.agent.path).unwrap();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        hung.set_nonblocking(true).unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            if let Ok((c, _)) = hung.accept() {
                conns.push(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let addr = s.h.frontend_addr();
    let page = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = get_with(addr, "/haserf?format=json", &[]);
        (r, t.elapsed())
    });
    // while the status service waits on the agent, HAProxy serves other requests at once
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let r = http_get(addr, "/").unwrap();
        assert_eq!(r.backend_host().as_deref(), Some("alpha"));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    let (r, took) = page.join().unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("no reply from the haserf agent"),
        "{}",
        r.body
    );
    assert!(
        took < Duration::from_secs(4),
        "bounded by HASERF_TIMEOUT_MS: {took:?}"
    );
    held.join().unwrap();
}

#[test]
fn the_script_also_works_loaded_per_thread() {
    // lua-load-per-thread: one Lua state (and one refresh task and map) per thread
    let s = setup_with("    nbthread 2");
    wait_served_by(&s, "alpha");
    let v = status_json(&s, &[], "/haserf?format=json");
    assert_eq!(v["members"].as_array().unwrap().len(), 3);
    for _ in 0..20 {
        let r = http_get(s.h.frontend_addr(), "/").unwrap();
        assert_eq!(
            r.header("x-served-by"),
            Some("alpha"),
            "every thread's map is filled"
        );
    }
    let log = s.h.log();
    assert!(!log.contains("runtime error"), "HAProxy log:\n{log}");
}

#[test]
fn the_lua_script_raises_no_runtime_errors_in_haproxy() {
    let s = setup();
    wait_served_by(&s, "alpha");
    assert_eq!(get_with(s.h.frontend_addr(), "/haserf", &[]).status, 200);
    assert_eq!(
        get_with(s.h.frontend_addr(), "/haserf?format=json", &[]).status,
        200
    );
    let log = s.h.log();
    assert!(
        !log.contains("runtime error") && !log.contains("ALERT"),
        "HAProxy log:\n{log}"
    );
}

#[test]
fn the_shipped_companion_cfg_passes_haproxy_check_without_a_warning() {
    let haproxy = require_binary("haproxy");
    // -dW: zero-warning mode, any warning makes the check fail.
    let out = std::process::Command::new("timeout")
        .arg("30")
        .arg(haproxy)
        .args(["-dW", "-c", "-f", "haproxy/companion.cfg"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
