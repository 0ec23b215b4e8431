//! `Type=notify`: the agent tells systemd READY=1 exactly when `haserf status` would exit 0
//! (a member at once; a load balancer once HAProxy is read and the first plan applied), says
//! what it waits for meanwhile (STATUS=), and STOPPING=1 when it leaves. systemd is played
//! by a datagram socket given as `NOTIFY_SOCKET`, as systemd does.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::agent::WebNode;
use support::{Haproxy, HaserfAgent, HaserfOptions};

const T: Duration = Duration::from_secs(30);

struct FakeSystemd {
    _dir: tempfile::TempDir,
    path: String,
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        FakeSystemd {
            path: path.display().to_string(),
            _dir: dir,
            sock,
            seen: Vec::new(),
        }
    }

    /// Reads messages until one contains `what` (returns it) or the deadline passes.
    fn wait_for(&mut self, what: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == what) {
                    return Some(msg);
                }
            }
        }
        None
    }
}

#[test]
fn ready_is_notified_only_once_haproxy_is_read_and_stopping_when_leaving() {
    let mut systemd = FakeSystemd::new();
    let mut h = Haproxy::start_slots("web", 2);
    let node = WebNode::start("web1", None);
    h.stop();
    let mut agent = HaserfAgent::start(
        HaserfOptions::manager("lb1", &h.admin_socket(), "web")
            .join(node.serf.bind_addr())
            .env("NOTIFY_SOCKET", &systemd.path),
    );
    // HAProxy is down: a STATUS line, no READY
    assert!(systemd
        .wait_for("READY=1", Duration::from_secs(3))
        .is_none());
    assert!(
        systemd.seen.iter().any(|m| m.starts_with("STATUS=waiting")),
        "{:?}",
        systemd.seen
    );
    assert_eq!(agent.status()["ready"], false);
    h.restart();
    let ready = systemd
        .wait_for("READY=1", T)
        .expect("READY=1 once HAProxy is back");
    assert!(ready.contains("STATUS=ready"), "{ready}");
    assert_eq!(
        agent.status()["ready"],
        true,
        "ready for systemd = ready for status"
    );
    agent.signal("TERM");
    assert!(
        systemd.wait_for("STOPPING=1", T).is_some(),
        "{:?}",
        systemd.seen
    );
    assert_eq!(agent.wait_exit(T), Some(0));
}

#[test]
fn a_plain_member_is_ready_for_systemd_at_once() {
    let mut systemd = FakeSystemd::new();
    let _agent =
        HaserfAgent::start(HaserfOptions::member("m1").env("NOTIFY_SOCKET", &systemd.path));
    assert!(
        systemd.wait_for("READY=1", T).is_some(),
        "{:?}",
        systemd.seen
    );
}
