//! The client and `haserf verify` against a fake runtime socket that misbehaves (never
//! answers, answers garbage, closes early).

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use haserf::haproxy::{Client, ClientError};

/// A unix socket that answers every connection with `reply(request)` (or holds it open
/// without answering when `reply` returns `None`).
fn fake(reply: fn(&str) -> Option<String>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.ends_with(b"quit\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                match reply(&String::from_utf8_lossy(&req)) {
                    Some(r) => {
                        let _ = s.write_all(r.as_bytes());
                    }
                    None => std::thread::sleep(Duration::from_secs(10)),
                }
            });
        }
    });
    (dir, path)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_socket_that_never_answers_is_a_timeout_error() {
    let (_d, path) = fake(|_| None);
    let c = Client::new(&path.display().to_string()).with_timeout(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    let err = rt().block_on(c.show("show info")).unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_connection_closed_before_every_reply_is_a_truncation_error() {
    // answers `prompt` and the first of three commands, then closes
    let (_d, path) = fake(|_| Some("\n> \n> ".into()));
    let c = Client::new(&path.display().to_string());
    let err = rt()
        .block_on(c.exchange(&[
            "show info".into(),
            "show stat".into(),
            "show servers state".into(),
        ]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Truncated {
                sent: 3,
                got: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn verify_exits_non_zero_naming_line_and_column_on_a_malformed_reply() {
    let (_d, path) = fake(|_| {
        Some(
            "\n> Name: HAProxy\nPid: 42\nUptime_sec: 5\n\n\
             > # pxname,svname,status,type,\nweb,web1,UP\n\n\
             > 1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\n\n> "
                .into(),
        )
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haserf"))
        .args(["verify", "--haproxy-socket"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("show stat") && err.contains("line 2") && err.contains("column 1"),
        "{err}"
    );
}
