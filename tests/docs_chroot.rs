//! docs/agent.md "HAProxy in a chroot", run as written: HAProxy in `chroot DIR` with
//! `setenv HASERF_STATUS_SOCKET /haserf/haserf.sock`, the agent given
//! `HASERF_STATUS_SOCKET=DIR/haserf/haserf.sock` in its environment (as
//! /etc/default/haserf does): the chrooted Lua status page lists the agent's slots, and the
//! haserf commands find the agent through the same variable. (Needs root, for chroot.)

mod support;

use std::time::Duration;

use support::agent::WebNode;
use support::{
    alloc_ip, free_port_on, http_get, wait_until, Haproxy, HaproxyConfig, HaserfAgent,
    HaserfOptions,
};

const T: Duration = Duration::from_secs(30);

#[test]
fn a_chrooted_haproxy_s_status_page_reaches_an_agent_whose_socket_is_inside_the_chroot() {
    let chroot = tempfile::tempdir().unwrap();
    let sock_dir = chroot.path().join("haserf");
    std::fs::create_dir(&sock_dir).unwrap();
    let ip = alloc_ip();
    let fe = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let h = Haproxy::start(HaproxyConfig::status_page(
        fe,
        3,
        &format!(
            "chroot {}\n    setenv HASERF_STATUS_SOCKET /haserf/haserf.sock",
            chroot.path().display()
        ),
    ));
    let node = WebNode::start("web1", None);
    let sock = sock_dir.join("haserf.sock").display().to_string();
    let agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web")
            .join(node.serf.bind_addr())
            .env("HASERF_STATUS_SOCKET", &sock),
    );
    agent.wait_serving(&["web1"], T);
    assert!(!agent
        .args()
        .iter()
        .any(|a| a.starts_with("--status-socket")));
    let page = wait_until(T, "the chrooted status page to list web1", || {
        let r = http_get(fe, "/haserf?format=json").map_err(|e| e.to_string())?;
        if r.status == 200 && r.body.contains("web1") {
            Ok(r.body)
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });
    assert!(page.contains("\"slot\""), "{page}");
    // the haserf commands read the same variable
    let out = std::process::Command::new(support::agent::haserf_bin())
        .args(["slots", "--used"])
        .env("HASERF_STATUS_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web1"));
}
