//! The configuration matrix: one real HAProxy with one backend per `server-template` form
//! users write (agent-check answering `up` or a weight, `balance source`/`uri`/`hash`, a
//! port-less template, `rise 1`/`fall 1`, `slowstart` + `maxconn`, `track`, `init-state` on
//! 3.1+), plus backends haserf must refuse (static servers only, FQDN placeholder, a backend
//! that does not exist). One reconciler manages them all. For every case: the members are
//! served through HAProxy (or the backend is refused with a specific error), no runtime
//! command is sent once converged, and static servers are never touched.
//!
//! Runs with HAProxy 2.6 by default and 3.0/3.2 through `HASERF_HAPROXY`
//! (scripts/test-matrix.sh).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use haserf::control::model::SlotState;
use haserf::slots::{spawn_reconciler, DesiredMember, ReconcilerConfig, ReconcilerHandle, Want};
use support::agent::run_haserf as haserf;
use support::{
    alloc_ip, free_port_on, http_get, wait_until, Haproxy, HaproxyConfig, HaserfAgent,
    HaserfOptions, HttpBackend,
};

/// Backends with a template, and the name prefix of their slots.
const TEMPLATED: &[(&str, &str)] = &[
    ("plain", "pl"),
    ("agentup", "au"),
    ("agentw", "aw"),
    ("bsource", "bs"),
    ("buri", "bu"),
    ("bhash", "bh"),
    ("noport", "np"),
    ("fall1", "f1"),
    ("slow", "sl"),
    ("tracked", "tk"),
    ("initst", "is"),
    ("otherph", "ph"),
];
/// Backends with a static load-balancing algorithm: a `weight` tag is refused once.
const STATIC_ALGO: &[&str] = &["bsource", "buri", "bhash"];
/// Backends haserf refuses, with a word of the expected error.
const REFUSED: &[(&str, &str)] = &[
    ("statics", "no server-template"),
    ("fqdn", "FQDN placeholder"),
    ("missing", "does not exist"),
];

/// Every case in one HAProxy. `@FE@` is the frontend; requests for `/NAME/…` go to backend
/// NAME. Members of the port-less template listen on the frontend's port (HAProxy connects
/// to the client's destination port); agents listen on `@AP@` at each member's address.
const CONFIG: &str = "frontend fe
    bind @FE@
    use_backend %[path,field(2,/)]

backend plain
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template pl 1-3 127.0.0.1:9 check disabled
    server st1 @ST1@ check
    server st2 @ST2@

backend agentup
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template au 1-3 127.0.0.1:9 check disabled agent-check agent-port @AP@ agent-inter 300ms

backend agentw
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template aw 1-3 127.0.0.1:9 weight 100 check disabled agent-check agent-port @APW@ agent-inter 300ms

backend bsource
    balance source
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template bs 1-3 127.0.0.1:9 check disabled

backend buri
    balance uri
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template bu 1-3 127.0.0.1:9 check disabled

backend bhash
    balance hash path
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template bh 1-3 127.0.0.1:9 check disabled

backend noport
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template np 1-3 127.0.0.1 check port @FEPORT@ disabled

backend fall1
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 1 fall 1
    server-template f1 1-3 127.0.0.1:9 check disabled

backend slow
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template sl 1-3 127.0.0.1:9 check disabled slowstart 2s maxconn 5

backend trackme
    option httpchk GET /healthz
    server t1 @ST3@ check inter 300ms rise 1 fall 2

backend tracked
    server-template tk 1-3 127.0.0.1:9 track trackme/t1 disabled

backend initst
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
.if version_atleast(3.1)
    server-template is 1-3 127.0.0.1:9 check disabled init-state fully-down
.else
    server-template is 1-3 127.0.0.1:9 check disabled
.endif

backend otherph
    option httpchk GET /healthz
    default-server inter 300ms fastinter 200ms downinter 300ms rise 2 fall 2
    server-template ph 1-3 192.0.2.1:80 check disabled

backend statics
    option httpchk GET /healthz
    server s1 @ST4@
    server static2 @ST5@ check inter 300ms
    server static3 @ST6@

backend fqdn
    server-template fq 2 slot.invalid:80 check init-addr none
";

/// An agent-check responder on `addr`: answers every connection with `answer`.
fn agent(addr: SocketAddr, answer: &'static str) {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("agent {addr}: {e}"));
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = c.write_all(answer.as_bytes());
            let mut sink = [0u8; 64];
            let _ = c.read(&mut sink);
        }
    });
}

/// `show servers state` rows of the static servers: (backend/server) → the fields a
/// runtime command could change (address, admin state, user weight, port).
fn static_state(h: &Haproxy) -> BTreeMap<String, String> {
    let statics = [
        "plain/st1",
        "plain/st2",
        "trackme/t1",
        "statics/s1",
        "statics/static2",
        "statics/static3",
    ];
    h.cmd("show servers state")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let key = format!("{}/{}", f.get(1)?, f.get(3)?);
            statics.contains(&key.as_str()).then(|| {
                // srv_addr, srv_admin_state, srv_uweight, srv_port
                (key, format!("{} {} {} {}", f[4], f[6], f[7], f[18]))
            })
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Member name → (slot, haproxy status) for members in ready slots of `backend`.
fn served(r: &ReconcilerHandle, backend: &str) -> BTreeMap<String, (String, String)> {
    r.status()
        .slots
        .iter()
        .filter(|s| s.backend == backend && s.state == SlotState::Ready)
        .filter_map(|s| {
            let m = s.member.clone()?;
            Some((m, (s.slot.clone(), s.haproxy_status.clone())))
        })
        .collect()
}

/// Resync period of the reconciler in this test.
const RESYNC: Duration = Duration::from_millis(300);
/// The no-command window: ten resync passes (each one a full read-back and plan) and ten
/// agent-check answers. The loops this guards against (retrying a refused command, fighting
/// an agent's weight, re-sending an address) ran at 1–20 Hz, so each would add at least
/// three applies within the window.
const WINDOW: Duration = Duration::from_secs(3);

#[test]
fn every_template_form_converges_and_static_servers_are_never_touched() {
    let fe_ip = alloc_ip();
    let fe_port = free_port_on(fe_ip);
    let fe = SocketAddr::from((fe_ip, fe_port));
    let statics: Vec<HttpBackend> = (1..=6)
        .map(|i| HttpBackend::start(&format!("static-{i}")))
        .collect();
    let member_ips: BTreeMap<&str, Vec<Ipv4Addr>> = TEMPLATED
        .iter()
        .map(|(b, _)| (*b, vec![alloc_ip(), alloc_ip()]))
        .collect();
    let ap = free_port_on(member_ips["agentup"][0]);
    let apw = free_port_on(member_ips["agentw"][0]);
    let mut cfg = HaproxyConfig::new(CONFIG)
        .var("FE", &fe.to_string())
        .var("FEPORT", &fe_port.to_string())
        .var("AP", &ap.to_string())
        .var("APW", &apw.to_string());
    for (i, s) in statics.iter().enumerate() {
        cfg = cfg.var(&format!("ST{}", i + 1), &s.addr().to_string());
    }
    let h = Haproxy::start(cfg);
    let before = static_state(&h);
    assert_eq!(before.len(), 6, "{before:?}");

    // two members per templated backend
    let mut members: BTreeMap<&str, Vec<HttpBackend>> = BTreeMap::new();
    for (b, ips) in &member_ips {
        let v = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let port = if *b == "noport" { fe_port } else { 0 };
                HttpBackend::start_on(&format!("{b}-{i}"), SocketAddr::from((*ip, port)))
            })
            .collect();
        members.insert(b, v);
    }
    for ip in &member_ips["agentup"] {
        agent(SocketAddr::from((*ip, ap)), "up\n");
    }
    for ip in &member_ips["agentw"] {
        agent(SocketAddr::from((*ip, apw)), "50%\n");
    }

    let rt = runtime();
    let _g = rt.enter();
    let mut backends: Vec<String> = TEMPLATED.iter().map(|(b, _)| b.to_string()).collect();
    backends.extend(REFUSED.iter().map(|(b, _)| b.to_string()));
    let mut rcfg = ReconcilerConfig::new(h.admin_socket().display().to_string(), backends);
    rcfg.resync_interval = RESYNC;
    let r = spawn_reconciler(rcfg);
    for (b, ms) in &members {
        let desired = ms
            .iter()
            .map(|m| DesiredMember {
                name: m.name().to_string(),
                addr: m.addr().ip(),
                port: (*b != "noport").then(|| m.addr().port()),
                weight: STATIC_ALGO.contains(b).then_some(5),
                want: Want::Ready,
            })
            .collect();
        r.set_desired(b, desired);
    }
    for (b, _) in REFUSED {
        r.set_desired(b, Vec::new());
    }

    // every member served, in a ready slot, UP (the agent's `DRAIN (agent)` while the first
    // check runs must not hold it back)
    for (b, ms) in &members {
        let want: Vec<String> = ms.iter().map(|m| m.name().to_string()).collect();
        wait_until(Duration::from_secs(20), &format!("{b}: members UP"), || {
            let s = served(&r, b);
            let up = want
                .iter()
                .all(|m| s.get(m).is_some_and(|(_, st)| st.starts_with("UP")));
            if up {
                Ok(())
            } else {
                Err((s, r.status().last_error))
            }
        });
    }
    // through HAProxy: every member answers on its backend's path
    for (b, ms) in &members {
        let want: std::collections::BTreeSet<String> =
            ms.iter().map(|m| m.name().to_string()).collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut n = 0u32;
        wait_until(
            Duration::from_secs(10),
            &format!("{b}: members answer"),
            || {
                n += 1;
                // distinct paths so `balance uri`/`hash` spread; `balance source` is pinned to
                // one client address, so one member answering is what it promises
                let resp = http_get(fe, &format!("/{b}/{n}")).map_err(|e| e.to_string())?;
                if resp.status != 200 {
                    return Err(format!("status {}", resp.status));
                }
                seen.extend(resp.backend_host());
                let enough = if *b == "bsource" {
                    !seen.is_empty()
                } else {
                    want.is_subset(&seen)
                };
                if enough {
                    Ok(())
                } else {
                    Err(format!("{seen:?}"))
                }
            },
        );
        // `plain` also has its two static servers in rotation
        let mut allowed = want.clone();
        if *b == "plain" {
            allowed.extend(["static-1".to_string(), "static-2".to_string()]);
        }
        assert!(seen.is_subset(&allowed), "{b}: {seen:?}");
    }

    // the agent owns the weight: 50 % of 100 stays
    let aw = h.cmd("show servers state agentw");
    for (slot, _) in served(&r, "agentw").values() {
        let row = aw
            .lines()
            .find(|l| l.split(' ').nth(3) == Some(slot))
            .unwrap_or_else(|| panic!("{slot} in {aw}"));
        assert_eq!(row.split(' ').nth(7), Some("50"), "{row}");
    }

    // refused: one specific error per backend, the agent not ready
    let st = r.status();
    for (b, word) in REFUSED {
        let e = st
            .backend_errors
            .get(*b)
            .unwrap_or_else(|| panic!("no error for {b}: {:?}", st.backend_errors));
        assert!(e.contains(word), "{b}: {e}");
    }
    assert!(
        !st.ready,
        "backends that cannot be managed keep the agent not ready"
    );

    // static algorithms: `set weight 5` refused once per member, members stay at full weight
    let refused_weights: Vec<_> = st
        .refused_commands
        .iter()
        .filter(|c| c.command.starts_with("set weight"))
        .collect();
    assert_eq!(
        refused_weights.len(),
        2 * STATIC_ALGO.len(),
        "{refused_weights:?}"
    );
    for c in &refused_weights {
        assert!(STATIC_ALGO.contains(&c.backend.as_str()), "{c:?}");
        assert!(c.reply.contains("static LB algorithm"), "{c:?}");
        assert!(c.member.is_some(), "{c:?}");
    }
    assert_eq!(
        st.refused_commands.len(),
        refused_weights.len(),
        "{:?}",
        st.refused_commands
    );

    // converged: zero commands over the window, while passes keep running
    let (applies, errors, passes) = (st.applies, st.apply_errors, st.passes);
    assert_eq!(
        errors as usize,
        refused_weights.len(),
        "each refusal counted once"
    );
    std::thread::sleep(WINDOW);
    let st = r.status();
    assert!(st.passes >= passes + 8, "passes {passes} → {}", st.passes);
    assert_eq!(
        (st.applies, st.apply_errors),
        (applies, errors),
        "commands sent after convergence; refused: {:?}; last error {:?}",
        st.refused_commands,
        st.last_error
    );

    // static servers untouched, and not listed as slots
    assert_eq!(static_state(&h), before);
    for s in &st.slots {
        let (_, prefix) = TEMPLATED
            .iter()
            .find(|(b, _)| *b == s.backend)
            .unwrap_or_else(|| panic!("slot of an unmanaged backend: {s:?}"));
        assert!(s.slot.starts_with(prefix), "{s:?}");
    }
    // the third slot of each template is still free at its placeholder
    assert_eq!(st.slots.len(), 3 * TEMPLATED.len());
    for s in st.slots.iter().filter(|s| s.member.is_none()) {
        assert_eq!(s.addr, None, "a free slot at its own placeholder: {s:?}");
    }
    // a member leaves a template whose placeholder is not 127.0.0.1: its slot goes back to
    // the template's own placeholder
    let ph = &members["otherph"];
    let gone = served(&r, "otherph")[ph[1].name()].0.clone();
    r.set_desired(
        "otherph",
        vec![DesiredMember {
            name: ph[0].name().to_string(),
            addr: ph[0].addr().ip(),
            port: Some(ph[0].addr().port()),
            weight: None,
            want: Want::Ready,
        }],
    );
    wait_until(
        Duration::from_secs(10),
        "left slot back at 192.0.2.1:80",
        || {
            let rows = h.slots("otherph");
            let row = rows.iter().find(|x| x.server() == gone).unwrap();
            if row.status() == "MAINT" && row.addr() == "192.0.2.1:80" {
                Ok(())
            } else {
                Err(format!("{} {}", row.status(), row.addr()))
            }
        },
    );
    rt.block_on(r.shutdown());
}

#[test]
fn a_missing_or_template_less_backend_is_a_loud_error_and_the_agent_is_not_ready() {
    let fe_ip = alloc_ip();
    let fe = SocketAddr::from((fe_ip, free_port_on(fe_ip)));
    let s = HttpBackend::start("static");
    let h = Haproxy::start(
        HaproxyConfig::new(
            "frontend fe
    bind @FE@
    default_backend statics

backend statics
    server s1 @S@
    server static2 @S@ check
",
        )
        .var("FE", &fe.to_string())
        .var("S", &s.addr().to_string()),
    );
    let fields = |h: &Haproxy| -> Vec<String> {
        // srv_name, srv_addr, srv_admin_state, srv_uweight, srv_port
        h.cmd("show servers state statics")
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.len() > 18).then(|| format!("{} {} {} {} {}", f[3], f[4], f[6], f[7], f[18]))
            })
            .collect()
    };
    let before = fields(&h);
    assert_eq!(before.len(), 2, "{before:?}");
    let a = HaserfAgent::start(
        HaserfOptions::manager("lb", &h.admin_socket(), "nope").args(&["--backend", "statics"]),
    );
    wait_until(Duration::from_secs(10), "both backend errors", || {
        let v = a.status();
        let e = &v["haproxy"]["backend_errors"];
        if e["nope"].is_string() && e["statics"].is_string() {
            Ok(v)
        } else {
            Err(v)
        }
    });
    let v = a.status();
    assert_eq!(v["ready"], false, "{v}");
    let e = v["haproxy"]["backend_errors"].clone();
    assert!(
        e["nope"].as_str().unwrap().contains("does not exist"),
        "{e}"
    );
    assert!(
        e["statics"]
            .as_str()
            .unwrap()
            .contains("no server-template"),
        "{e}"
    );
    // status exit code 1 (answers, not ready)
    let (ok, out, _) = a.cli("status", &["--format=json"]);
    assert!(!ok, "{out}");
    // one ERROR line per backend, not one per pass
    wait_until(Duration::from_secs(5), "two ERROR lines", || {
        let log = a.log();
        let n = log
            .lines()
            .filter(|l| l.contains("ERROR") && l.contains("backend cannot be managed"))
            .count();
        if n == 2 {
            Ok(())
        } else {
            Err(n)
        }
    });
    let m = a.metrics();
    for b in ["nope", "statics"] {
        let line = format!("haserf_backend_errors{{backend=\"{b}\"}} 1");
        assert!(m.contains(&line), "{line} not in\n{m}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let log = a.log();
    let n = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("backend cannot be managed"))
        .count();
    assert_eq!(n, 2, "{log}");
    assert_eq!(fields(&h), before);
}

#[test]
fn plan_and_verify_show_only_template_slots_and_the_agents_policy() {
    let fe_ip = alloc_ip();
    let fe = SocketAddr::from((fe_ip, free_port_on(fe_ip)));
    let h = Haproxy::start(
        HaproxyConfig::new(
            "frontend fe
    bind @FE@
    default_backend web

backend web
    server-template web 1-3 127.0.0.1:9 check disabled
    server st1 127.0.0.1:8080 check

backend api
    server-template api 1-2 127.0.0.1:9 disabled

backend spoe_agents
    server agent1 127.0.0.1:12345
",
        )
        .var("FE", &fe.to_string()),
    );
    let sock = h.admin_socket().display().to_string();
    // verify: template slots only (no static server, no other backend's SPOE server)
    let (ok, out, err) = haserf(&["verify", "--haproxy-socket", &sock, "--format", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let slots: Vec<String> = v["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["backend"].as_str().unwrap(),
                s["slot"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        slots,
        ["api/api1", "api/api2", "web/web1", "web/web2", "web/web3"],
        "{out}"
    );
    let (ok, out, err) = haserf(&[
        "verify",
        "--haproxy-socket",
        &sock,
        "--backend",
        "web",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["slots"].as_array().unwrap().len(), 3, "{out}");
    let (ok, _, err) = haserf(&[
        "verify",
        "--haproxy-socket",
        &sock,
        "--backend",
        "spoe_agents",
    ]);
    assert!(!ok && err.contains("no server-template"), "{err}");

    // plan: a failed member gets no slot, a member outside --allow-cidr is refused
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("members.json");
    std::fs::write(
        &members,
        r#"{"members":[
          {"name":"a","addr":"10.9.0.1","port":7946,"tags":{"role":"web","port":"8080"},"status":"alive"},
          {"name":"f","addr":"10.9.0.3","port":7946,"tags":{"role":"web","port":"8080"},"status":"failed"},
          {"name":"x","addr":"192.168.1.1","port":7946,"tags":{"role":"web","port":"8080"},"status":"alive"}]}"#,
    )
    .unwrap();
    let m = members.display().to_string();
    let plan = |more: &[&str]| {
        let mut args = vec!["plan", "--haproxy-socket", &sock, "--members", &m];
        args.extend_from_slice(more);
        haserf(&args)
    };
    let (ok, out, err) = plan(&["--backend", "web", "--allow-cidr", "10.0.0.0/8"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].ends_with("addr 10.9.0.1 port 8080"), "{out}");
    assert!(
        !out.contains("10.9.0.3") && !out.contains("192.168.1.1"),
        "{out}"
    );
    assert!(err.contains("x refused"), "{err}");
    // nothing to do: says so
    std::fs::write(&members, r#"{"members":[]}"#).unwrap();
    let (ok, out, err) = plan(&["--backend", "web"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "no changes");
    // a backend without a template: a clear error, exit 1
    let (ok, _, err) = plan(&["--backend", "spoe_agents"]);
    assert!(!ok && err.contains("no server-template"), "{err}");
}

/// A fake runtime API serving the 2.6 initial captures (ten free `web` slots) that refuses
/// every `set server … addr` with HAProxy's own text; every command line it gets is logged.
fn refusing_fake() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::os::unix::net::UnixListener;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/haproxy/");
    let read = |f: &str| std::fs::read_to_string(format!("{fixtures}{f}")).unwrap();
    let (info, stat, state) = (
        read("03-show-info.txt"),
        read("01-show-stat-initial.csv"),
        read("02-show-servers-state-initial.txt"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let l = UnixListener::bind(&path).unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.ends_with(b"quit\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let mut out = String::from("\n> ");
            for line in String::from_utf8_lossy(&req).lines() {
                let reply = match line {
                    "prompt" | "quit" => continue,
                    "show info" => info.clone(),
                    "show stat" => stat.clone(),
                    "show servers state" => state.clone(),
                    l if l.contains(" addr ") => {
                        "Update for the current server address family is only supported through configuration file.\n\n".to_string()
                    }
                    _ => "\n".to_string(),
                };
                seen.lock().unwrap().push(line.to_string());
                out.push_str(&reply);
                out.push_str("> ");
            }
            let _ = s.write_all(out.as_bytes());
        }
    });
    (dir, path, log)
}

#[test]
fn a_refused_address_stops_the_slots_batch_and_is_reported_once_not_retried() {
    let (_d, path, log) = refusing_fake();
    let rt = runtime();
    let _g = rt.enter();
    let mut cfg = ReconcilerConfig::new(path.display().to_string(), vec!["web".into()]);
    cfg.resync_interval = Duration::from_millis(100);
    let r = spawn_reconciler(cfg);
    r.set_desired(
        "web",
        vec![DesiredMember {
            name: "m1".into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: Some(8080),
            weight: None,
            want: Want::Ready,
        }],
    );
    let st = wait_until(Duration::from_secs(5), "the refusal reported", || {
        let st = r.status();
        if st.refused_commands.is_empty() {
            Err(st.passes)
        } else {
            Ok(st)
        }
    });
    let c = &st.refused_commands[0];
    assert_eq!(st.refused_commands.len(), 1, "{:?}", st.refused_commands);
    assert_eq!(c.member.as_deref(), Some("m1"));
    assert!(c.command.contains("addr 10.0.0.1 port 8080"), "{c:?}");
    assert!(c.reply.contains("address family"), "{c:?}");
    let passes = st.passes;
    wait_until(Duration::from_secs(5), "ten more passes", || {
        let p = r.status().passes;
        if p >= passes + 10 {
            Ok(())
        } else {
            Err(p)
        }
    });
    let sent: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !l.starts_with("show"))
        .cloned()
        .collect();
    // the address once; nothing after it for that slot (no `state drain` at the old address)
    assert_eq!(
        sent.iter().filter(|l| l.contains(" addr ")).count(),
        1,
        "{sent:?}"
    );
    assert!(!sent.iter().any(|l| l.contains("state drain")), "{sent:?}");
    let st = r.status();
    assert_eq!(st.apply_errors, 1, "reported once");
    assert_eq!(st.refused_commands.len(), 1);
    rt.block_on(r.shutdown());
}
