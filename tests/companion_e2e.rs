//! The companion end to end: real `serf agent` web nodes, the real `haserf agent` (status
//! socket, HAProxy manager, `--spoe-bind`), and a real HAProxy loading lua/haserf.lua and
//! haproxy/spoe.conf. Nothing is faked: the slots are filled by the agent from gossip.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(40);

fn repo_file(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// A web node: an HTTP backend answering with its name, and a stock serf agent advertising
/// it (`role=web`, `port=<http port>`) on the same address.
struct WebNode {
    http: HttpBackend,
    serf: SerfPeer,
}

fn web_node(name: &str, join: Option<SocketAddr>) -> WebNode {
    let ip = alloc_ip();
    let http = HttpBackend::start_on(name, SocketAddr::from((ip, free_port_on(ip))));
    let mut opts = SerfOptions::new(name)
        .tag("role", "web")
        .tag("port", &http.addr().port().to_string());
    opts.ip = Some(ip);
    if let Some(j) = join {
        opts = opts.join(j);
    }
    WebNode {
        http,
        serf: SerfPeer::start(opts),
    }
}

fn start_haproxy(status_socket: &Path, spoe: SocketAddr) -> Haproxy {
    let ip = alloc_ip();
    let fe = SocketAddr::from((ip, free_port_on(ip)));
    let cfg = HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    filter spoe engine haserf config {spoe_conf}
    http-request send-spoe-group haserf haserf-backend-facts
    http-response send-spoe-group haserf haserf-server-facts
    http-request use-service lua.haserf-status if {{ path /haserf }}
    http-response set-header X-Served-By %[lua.haserf_node]
    http-response set-header X-Haserf-Node %[var(txn.haserf.server_node)]
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template web 1-2 127.0.0.1:9 check disabled

backend haserf-spoe
    mode tcp
    option spop-check
    timeout connect 2s
    timeout server 1m
    server haserf {spoe} check inter 1s
",
        spoe_conf = repo_file("haproxy/spoe.conf"),
    ))
    .global(&format!(
        "    setenv HASERF_STATUS_SOCKET {}\n    setenv HASERF_REFRESH_MS 200\n    lua-load {}",
        status_socket.display(),
        repo_file("lua/haserf.lua")
    ));
    Haproxy::start(cfg)
}

fn start_agent(
    dir: &Path,
    h: &Haproxy,
    sock: &Path,
    spoe: SocketAddr,
    join: SocketAddr,
    ip: std::net::Ipv4Addr,
) -> Proc {
    let bind = format!("{ip}:7946");
    let args = [
        "agent",
        "--node",
        "lb",
        "--bind",
        &bind,
        "--join",
        &join.to_string(),
        "--haproxy-socket",
        &h.admin_socket().display().to_string(),
        "--backend",
        "web",
        "--status-socket",
        &sock.display().to_string(),
        "--spoe-bind",
        &spoe.to_string(),
        "--log-level",
        "debug",
    ]
    .map(String::from);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn(Launch::new(
        env!("CARGO_BIN_EXE_haserf"),
        &argv,
        dir.join("agent.log"),
    ))
}

fn status(h: &Haproxy) -> Result<Value, String> {
    let r = http_get(h.frontend_addr(), "/haserf?format=json").map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.body));
    }
    serde_json::from_str(&r.body).map_err(|e| e.to_string())
}

/// slot → member from the status page's `web` backend.
fn slot_members(v: &Value) -> Vec<(String, Option<String>, String)> {
    v["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["name"] == "web")
        .flat_map(|b| b["slots"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                s["slot"].as_str().unwrap_or("").to_string(),
                s["member"].as_str().map(str::to_string),
                s["live_status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn member_status(v: &Value, name: &str) -> Option<String> {
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["status"].as_str())
        .map(str::to_string)
}

/// Requests `/` until `want` has answered with X-Served-By (and the SPOE header) naming it;
/// no response may name a node other than the one that answered.
fn wait_served_by(h: &Haproxy, want: &str) {
    wait_until(WAIT, &format!("X-Served-By: {want}"), || {
        let r = http_get(h.frontend_addr(), "/").map_err(|e| e.to_string())?;
        let host = r.backend_host().unwrap_or_default();
        let by = r.header("x-served-by").unwrap_or("").to_string();
        assert!(
            by.is_empty() || by == host,
            "X-Served-By names {by:?} but {host:?} answered"
        );
        let spoe = r.header("x-haserf-node").unwrap_or("").to_string();
        assert!(
            spoe.is_empty() || spoe == host,
            "X-Haserf-Node names {spoe:?} but {host:?} answered"
        );
        if host == want && by == want && spoe == want {
            Ok(())
        } else {
            Err(format!(
                "{host:?} answered, X-Served-By {by:?}, X-Haserf-Node {spoe:?}"
            ))
        }
    });
}

#[test]
fn real_members_and_slots_on_the_status_page_and_x_served_by_follows_a_reused_slot() {
    let dir = tempfile::Builder::new()
        .prefix("haserf-companion-e2e-")
        .tempdir()
        .unwrap();
    let sock: PathBuf = dir.path().join("haserf.sock");
    let lb_ip = alloc_ip();
    let spoe = SocketAddr::from((lb_ip, free_port_on(lb_ip)));

    let alpha = web_node("alpha", None);
    let beta = web_node("beta", Some(alpha.serf.bind_addr()));
    let h = start_haproxy(&sock, spoe);
    let mut agent = start_agent(dir.path(), &h, &sock, spoe, alpha.serf.bind_addr(), lb_ip);

    // The status page shows the real members and the slots the agent filled.
    let v = wait_until(
        WAIT,
        "both web nodes in UP slots on the status page",
        || {
            let v = status(&h)?;
            let mut filled: Vec<(Option<String>, String)> = slot_members(&v)
                .into_iter()
                .map(|(_, m, live)| (m, live))
                .collect();
            filled.sort();
            if filled
                == [
                    (Some("alpha".into()), "UP".into()),
                    (Some("beta".into()), "UP".into()),
                ]
            {
                Ok(v)
            } else {
                Err(format!("{filled:?}"))
            }
        },
    );
    for n in ["alpha", "beta", "lb"] {
        assert_eq!(member_status(&v, n).as_deref(), Some("alive"), "{n}: {v}");
    }
    let alpha_member = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "alpha")
        .unwrap();
    assert_eq!(alpha_member["tags"]["role"], "web");
    assert_eq!(
        alpha_member["tags"]["port"],
        alpha.http.addr().port().to_string()
    );
    let html = http_get(h.frontend_addr(), "/haserf").unwrap();
    assert_eq!(html.status, 200);
    assert!(html.body.contains("alpha") && html.body.contains("Backend web"));

    wait_served_by(&h, "alpha");
    wait_served_by(&h, "beta");
    let alpha_slot = slot_members(&v)
        .into_iter()
        .find(|(_, m, _)| m.as_deref() == Some("alpha"))
        .map(|(s, _, _)| s)
        .unwrap();

    // alpha leaves: its slot is freed; gamma joins and takes that very slot.
    let mut alpha = alpha;
    alpha.serf.leave();
    wait_until(WAIT, "alpha's slot to be freed", || {
        let v = status(&h)?;
        let m = slot_members(&v);
        // the page lists used slots only: a freed slot is gone from the list
        match m.iter().find(|(s, _, _)| *s == alpha_slot) {
            None | Some((_, None, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let gamma = web_node("gamma", Some(beta.serf.bind_addr()));
    wait_until(WAIT, "gamma in alpha's former slot", || {
        let v = status(&h)?;
        let m = slot_members(&v);
        match m.iter().find(|(s, _, _)| *s == alpha_slot) {
            Some((_, Some(g), live)) if g == "gamma" && live == "UP" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    wait_served_by(&h, "gamma");
    wait_served_by(&h, "beta");

    // The agent goes away: the status page says so (503) and HAProxy keeps serving.
    agent.kill();
    wait_until(WAIT, "503 from the status page", || {
        let r = http_get(h.frontend_addr(), "/haserf").map_err(|e| e.to_string())?;
        if r.status == 503 {
            Ok(())
        } else {
            Err(r.status.to_string())
        }
    });
    let r = http_get(h.frontend_addr(), "/").unwrap();
    assert_eq!(r.status, 200);
    // ... and recovers when the agent is back.
    let _agent = start_agent(dir.path(), &h, &sock, spoe, beta.serf.bind_addr(), lb_ip);
    wait_until(WAIT, "the status page to recover", || {
        status(&h).map(|_| ())
    });
    drop(gamma);
}
