//! The maps the agent keeps, against a real HAProxy: the real map task (`haserf::maps`)
//! fed the way the reconciler and the membership feed it in the agent, HAProxy reading the
//! maps with the `map` converter. X-Served-By without Lua and without a round trip, pinned
//! clients refused from a map, two backends with the same server names, the file a
//! reloaded HAProxy reads, repair of a map cleared by hand, a `chroot`ed HAProxy.

mod companion_fixture;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use companion_fixture::*;
use haserf::control::model::MemberStatus;
use haserf::maps::{MapKind, MapSpec, MapSyncHandle};
use haserf::spoe::ClusterView;
use support::*;

const WAIT: Duration = Duration::from_secs(15);

struct Setup {
    h: Haproxy,
    agent: FakeAgent,
    view: Arc<SharedView>,
    maps: Option<MapSyncHandle>,
    served_by: PathBuf,
    member_status: PathBuf,
    alpha: HttpBackend,
    beta: HttpBackend,
    _dir: tempfile::TempDir,
}

/// HAProxy with two backends declaring the same server names (`s1`, `s2`), X-Served-By
/// and the pinned-node rule from maps, and `global_extra` lines; the map task keeping
/// `served-by` and `member-status`.
fn setup_with(global_extra: &str) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("haserf-maps-")
        .tempdir()
        .unwrap();
    let served_by = dir.path().join("served-by.map");
    let member_status = dir.path().join("member-status.map");
    // HAProxy refuses to start on a missing map file: the operator creates them empty
    std::fs::write(&served_by, "").unwrap();
    std::fs::write(&member_status, "").unwrap();
    let alpha = HttpBackend::start("alpha");
    let beta = HttpBackend::start("beta");
    let ip = alloc_ip();
    let fe = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let cfg = HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    http-request deny deny_status 403 if {{ req.hdr(x-haserf-node) -m found }} !{{ req.hdr(x-haserf-node),map({status}) -m str alive }}
    http-response set-var-fmt(txn.haserf_slot) %[be_name]/%[srv_name]
    http-response set-header X-Served-By %[var(txn.haserf_slot),map({served})]
    use_backend api if {{ path_beg /api }}
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template s 1-2 127.0.0.1:9 check disabled

backend api
    balance roundrobin
    option httpchk GET /healthz
    default-server inter 500ms fastinter 200ms downinter 500ms rise 1 fall 2
    server-template s 1-2 127.0.0.1:9 check disabled
",
        served = served_by.display(),
        status = member_status.display(),
    ))
    .global(global_extra);
    let h = Haproxy::start(cfg);
    let view = Arc::new(SharedView::default());
    view.set_members(vec![
        member("alpha", &[("role", "web")], MemberStatus::Alive),
        member("beta", &[("role", "web")], MemberStatus::Alive),
        member("gamma", &[("role", "web")], MemberStatus::Failed),
    ]);
    for be in ["web", "api"] {
        view.set_slot(free_in(be, "s1"));
        view.set_slot(free_in(be, "s2"));
    }
    let agent = FakeAgent::new(dir.path().join("haserf.sock"), view.clone());
    let maps = agent.start_maps(
        &h.admin_socket(),
        vec![
            MapSpec {
                kind: MapKind::ServedBy,
                path: served_by.clone(),
            },
            MapSpec {
                kind: MapKind::MemberStatus,
                path: member_status.clone(),
            },
        ],
    );
    Setup {
        h,
        agent,
        view,
        maps: Some(maps),
        served_by,
        member_status,
        alpha,
        beta,
        _dir: dir,
    }
}

fn setup() -> Setup {
    setup_with("")
}

impl Setup {
    /// Puts `node` (its HTTP backend `http`) into `<be>/<slot>` as the agent does: HAProxy
    /// first, then the slot table the map task reads.
    fn fill(&self, be: &str, slot: &str, node: &str, http: &HttpBackend) {
        fill_slot_in(&self.h, be, slot, http);
        self.view.set_slot(filled_in(be, slot, node, http.addr()));
    }

    fn get(&self, path: &str) -> HttpResponse {
        get_with(self.h.frontend_addr(), path, &[])
    }

    /// Waits until `path` is answered by `node` with X-Served-By naming it.
    fn wait_served_by(&self, path: &str, node: &str) {
        wait_until(WAIT, &format!("X-Served-By {node} on {path}"), || {
            let r = self.get(path);
            let host = r.backend_host().unwrap_or_default();
            match (host.as_str(), r.header("x-served-by")) {
                (h, Some(by)) if h == node && by == node => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
    }

    fn show_map(&self, path: &Path) -> Vec<String> {
        let reply = self.h.cmd(&format!("show map {}", path.display()));
        let mut entries: Vec<String> = reply
            .lines()
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(' ').map(|(_, kv)| kv.to_string()))
            .collect();
        entries.sort();
        entries
    }
}

/// The `key value` lines of a map file, sorted (comments left out).
fn file_entries(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn x_served_by_comes_from_the_served_by_map_on_every_response() {
    let s = setup();
    s.fill("web", "s1", "alpha", &s.alpha);
    s.wait_served_by("/", "alpha");
    for _ in 0..50 {
        let r = s.get("/");
        assert_eq!(r.backend_host().as_deref(), Some("alpha"));
        assert_eq!(r.header("x-served-by"), Some("alpha"));
    }
    assert_eq!(s.show_map(&s.served_by), ["web/s1 alpha"]);
    assert_eq!(file_entries(&s.served_by), ["web/s1 alpha"]);
    let log = s.h.log();
    assert!(!log.contains("ALERT"), "HAProxy log:\n{log}");
}

#[test]
fn a_slot_given_to_another_member_is_renamed_in_the_map() {
    let s = setup();
    s.fill("web", "s1", "alpha", &s.alpha);
    s.wait_served_by("/", "alpha");
    // alpha leaves (maint, the slot freed), beta takes the same slot
    assert!(s.h.cmd("set server web/s1 state maint").trim().is_empty());
    s.view.set_slot(free_in("web", "s1"));
    wait_until(WAIT, "the served-by entry to go", || {
        match s.show_map(&s.served_by).as_slice() {
            [] => Ok(()),
            other => Err(other.to_vec()),
        }
    });
    s.fill("web", "s1", "beta", &s.beta);
    s.wait_served_by("/", "beta");
    assert_eq!(file_entries(&s.served_by), ["web/s1 beta"]);
}

#[test]
fn two_backends_with_the_same_server_names_do_not_collide() {
    let s = setup();
    s.fill("web", "s1", "alpha", &s.alpha);
    s.fill("api", "s1", "beta", &s.beta);
    s.wait_served_by("/", "alpha");
    s.wait_served_by("/api/x", "beta");
    assert_eq!(s.show_map(&s.served_by), ["api/s1 beta", "web/s1 alpha"]);
}

#[test]
fn the_member_status_map_refuses_a_client_pinned_to_a_node_that_is_not_alive() {
    let s = setup();
    s.fill("web", "s1", "alpha", &s.alpha);
    wait_until(WAIT, "the member-status map", || {
        match s.show_map(&s.member_status).len() {
            3 => Ok(()),
            n => Err(n),
        }
    });
    let pinned = |node: &str| get_with(s.h.frontend_addr(), "/", &[("x-haserf-node", node)]);
    assert_eq!(pinned("alpha").status, 200);
    assert_eq!(pinned("gamma").status, 403, "gamma failed");
    assert_eq!(pinned("nobody").status, 403, "unknown node");
    // alpha fails: refused within the map task's reaction time
    let mut members = s.view.members();
    members[0].status = MemberStatus::Failed;
    s.view.set_members(members);
    s.maps.as_ref().unwrap().changed();
    wait_until(
        WAIT,
        "a client pinned to alpha to be refused",
        || match pinned("alpha").status {
            403 => Ok(()),
            other => Err(other),
        },
    );
}

#[test]
fn haproxy_keeps_the_entries_while_the_agent_is_down_and_a_restart_reads_the_file() {
    let mut s = setup();
    s.fill("web", "s1", "alpha", &s.alpha);
    s.wait_served_by("/", "alpha");
    // the agent goes away: HAProxy keeps answering from the map
    let maps = s.maps.take().unwrap();
    s.agent.rt.block_on(maps.shutdown());
    for _ in 0..20 {
        assert_eq!(s.get("/").header("x-served-by"), Some("alpha"));
    }
    // a restarted HAProxy (runtime state gone) reads the file the agent wrote
    s.h.restart();
    assert_eq!(s.show_map(&s.served_by), ["web/s1 alpha"]);
    assert_eq!(s.show_map(&s.member_status).len(), 3);
    // its slot restored (as HAProxy's server-state file does), traffic is named at once
    fill_slot_in(&s.h, "web", "s1", &s.alpha);
    let r = s.get("/");
    assert_eq!(r.backend_host().as_deref(), Some("alpha"));
    assert_eq!(r.header("x-served-by"), Some("alpha"));
}

#[test]
fn a_map_cleared_by_hand_is_repaired() {
    let s = setup();
    s.fill("web", "s1", "alpha", &s.alpha);
    s.wait_served_by("/", "alpha");
    let reply = s.h.cmd(&format!(
        "clear map {}; add map {} web/s2 intruder",
        s.served_by.display(),
        s.served_by.display()
    ));
    assert!(reply.trim().is_empty(), "{reply:?}");
    wait_until(WAIT, "the map to be repaired", || {
        match s.show_map(&s.served_by).as_slice() {
            [e] if e == "web/s1 alpha" => Ok(()),
            other => Err(other.to_vec()),
        }
    });
    let st = s.maps.as_ref().unwrap().status();
    assert!(st[0].in_sync, "{st:?}");
    assert!(st[0].commands >= 3, "{st:?}");
}

#[test]
fn a_map_haproxy_does_not_declare_is_reported_as_such() {
    let s = setup();
    let undeclared = s._dir.path().join("nowhere.map");
    let maps = s.agent.start_maps(
        &s.h.admin_socket(),
        vec![MapSpec {
            kind: MapKind::ServedBy,
            path: undeclared.clone(),
        }],
    );
    let st = wait_until(WAIT, "an error naming the undeclared map", || {
        let st = maps.status();
        match &st[0].last_error {
            Some(e) if e.contains("declare it in haproxy.cfg") => Ok(st),
            _ => Err(format!("{st:?}")),
        }
    });
    assert!(!st[0].in_sync);
    // the file is written anyway, for the HAProxy that will declare it
    assert!(undeclared.exists());
    s.agent.rt.block_on(maps.shutdown());
}

#[test]
fn the_maps_work_in_a_chrooted_haproxy() {
    // Debian runs HAProxy with `chroot /var/lib/haproxy`: map files are read before the
    // chroot, and the runtime API changes them in memory; the Lua script's socket to the
    // agent would be hidden. (Needs root, like the netns tests.)
    let jail = tempfile::tempdir().unwrap();
    let s = setup_with(&format!("    chroot {}", jail.path().display()));
    s.fill("web", "s1", "alpha", &s.alpha);
    s.wait_served_by("/", "alpha");
    s.fill("web", "s2", "beta", &s.beta);
    wait_until(WAIT, "both entries in the chrooted HAProxy", || {
        match s.show_map(&s.served_by).len() {
            2 => Ok(()),
            n => Err(n),
        }
    });
}
