//! The runtime API client, `haserf verify` and `haserf plan` against a real HAProxy.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use haserf::control::model::{SlotState, SlotsReply};
use haserf::haproxy::{AdminState, Client, ClientError, Command, CommandError, StatTable};
use support::Haproxy;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_thousand_slot_changes_go_out_batched_on_one_connection_and_all_apply() {
    let h = Haproxy::start_slots("web", 50);
    let client = Client::new(&h.admin_socket().display().to_string());
    let mut cmds = Vec::new();
    for round in 0..20u8 {
        for slot in 1..=50u8 {
            let addr = IpAddr::V4(Ipv4Addr::new(10, round, 0, slot));
            cmds.push(
                Command::set_addr("web", &format!("web{slot}"), addr, Some(8000 + slot as u16))
                    .unwrap(),
            );
        }
    }
    assert_eq!(cmds.len(), 1000);
    let t0 = Instant::now();
    let replies = rt().block_on(client.run(&cmds)).unwrap();
    let took = t0.elapsed();
    assert_eq!(replies.len(), 1000);
    for (c, r) in cmds.iter().zip(&replies) {
        assert!(r.is_ok(), "{c}: {r:?}");
    }
    let stat = h.cmd("show stat");
    let t = StatTable::parse(&stat).unwrap();
    for r in t.servers().filter(|r| r.proxy() == "web") {
        let n: u16 = r.name()[3..].parse().unwrap();
        assert_eq!(r.addr(), Some(format!("10.19.0.{n}:{}", 8000 + n).as_str()));
    }
    eprintln!("1000 commands in one round trip: {took:?}");
}

#[test]
fn a_change_on_a_socket_without_admin_level_is_a_clear_permission_error() {
    let h = Haproxy::start_slots("web", 2);
    let client = Client::new(&h.user_socket().display().to_string());
    let cmd = Command::set_state("web", "web1", AdminState::Ready).unwrap();
    let err = rt().block_on(client.run_all(&[cmd])).unwrap_err();
    match &err {
        ClientError::Command {
            error: CommandError::PermissionDenied(_),
            ..
        } => {}
        other => panic!("expected permission denied, got {other:?}"),
    }
    assert!(err.to_string().contains("level admin"), "{err}");
    // reading works at user level
    assert!(rt().block_on(client.show("show info")).is_ok());
}

#[test]
fn unknown_backends_and_servers_are_typed_errors() {
    let h = Haproxy::start_slots("web", 2);
    let client = Client::new(&h.admin_socket().display().to_string());
    let cmds = [
        Command::set_state("nope", "web1", AdminState::Ready).unwrap(),
        Command::set_state("web", "web99", AdminState::Ready).unwrap(),
        Command::set_addr("web", "web1", "10.0.0.1".parse().unwrap(), Some(80)).unwrap(),
        Command::set_weight("web", "web1", 20).unwrap(),
    ];
    let r = rt().block_on(client.run(&cmds)).unwrap();
    assert!(
        matches!(r[0], Err(CommandError::UnknownBackend(_))),
        "{:?}",
        r[0]
    );
    assert!(
        matches!(r[1], Err(CommandError::UnknownServer(_))),
        "{:?}",
        r[1]
    );
    assert!(r[2].is_ok(), "{:?}", r[2]);
    assert!(r[3].is_ok(), "{:?}", r[3]);
}

#[test]
fn an_unreachable_socket_is_an_io_error_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let client = Client::new(&path.display().to_string()).with_timeout(Duration::from_secs(1));
    let err = rt().block_on(client.show("show info")).unwrap_err();
    assert!(matches!(err, ClientError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("none.sock"), "{err}");
}

#[test]
fn a_connection_opened_before_a_restart_is_not_reused_after_it() {
    let mut h = Haproxy::start_slots("web", 2);
    let client = Client::new(&h.admin_socket().display().to_string());
    let rt = rt();
    let p1 = haserf::haproxy::Info::parse(&rt.block_on(client.show("show info")).unwrap())
        .unwrap()
        .pid;
    h.restart();
    let p2 = haserf::haproxy::Info::parse(&rt.block_on(client.show("show info")).unwrap())
        .unwrap()
        .pid;
    assert_ne!(
        p1, p2,
        "every call opens a fresh connection and reaches the new process"
    );
}

#[test]
fn verify_prints_every_slot_as_json_and_fails_clearly_without_haproxy() {
    let h = Haproxy::start_slots("web", 5);
    h.cmd("set server web/web2 addr 10.1.2.3 port 8080");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haserf"))
        .args(["verify", "--haproxy-socket"])
        .arg(h.admin_socket())
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: SlotsReply = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply.slots.len(), 5);
    assert!(reply
        .slots
        .iter()
        .all(|s| s.state == SlotState::Maint && s.member.is_none() && s.haproxy_status == "MAINT"));
    let web2 = reply.slots.iter().find(|s| s.slot == "web2").unwrap();
    assert_eq!(web2.addr.as_deref(), Some("10.1.2.3:8080"));
    let web1 = reply.slots.iter().find(|s| s.slot == "web1").unwrap();
    assert_eq!(web1.addr, None);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haserf"))
        .args(["verify", "--haproxy-socket", "/nonexistent/haproxy.sock"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/haproxy.sock"), "{err}");
}

#[test]
fn plan_prints_the_exact_commands_without_sending_them() {
    let h = Haproxy::start_slots("web", 3);
    let dir = tempfile::tempdir().unwrap();
    let members = dir.path().join("members.json");
    std::fs::write(
        &members,
        r#"{"members":[
          {"name":"a","addr":"10.9.0.1","port":7946,"tags":{"role":"web","port":"8080"},"status":"alive"},
          {"name":"b","addr":"10.9.0.2","port":7946,"tags":{"role":"db"},"status":"alive"}]}"#,
    )
    .unwrap();
    let before = h.cmd("show servers state web");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haserf"))
        .args(["plan", "--haproxy-socket"])
        .arg(h.admin_socket())
        .arg("--members")
        .arg(&members)
        .args(["--backend", "web"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let slot = lines[0]
        .strip_prefix("set server web/")
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert_eq!(
        lines[0],
        format!("set server web/{slot} addr 10.9.0.1 port 8080")
    );
    assert_eq!(lines[1], format!("set server web/{slot} state drain"));
    let after = h.cmd("show servers state web");
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.split(' ').take(9).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&before), strip(&after), "plan changed HAProxy");
}

#[test]
fn the_client_also_speaks_to_a_tcp_runtime_socket() {
    use support::{alloc_ip, free_port_on, HaproxyConfig};
    let ip = alloc_ip();
    let fe = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let st = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let api = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let h = Haproxy::start(
        HaproxyConfig::slots("web", 3, fe, st)
            .global(&format!("    stats socket ipv4@{api} level admin")),
    );
    let client = Client::new(&api.to_string());
    assert!(matches!(
        client.endpoint(),
        haserf::haproxy::Endpoint::Tcp(_)
    ));
    let cmd = Command::set_addr("web", "web3", "10.7.7.7".parse().unwrap(), Some(81)).unwrap();
    rt().block_on(client.run_all(&[cmd])).unwrap();
    let t = h.cmd("show stat");
    let t = StatTable::parse(&t).unwrap();
    let web3 = t.servers().find(|r| r.name() == "web3").unwrap();
    assert_eq!(web3.addr(), Some("10.7.7.7:81"));
}

#[test]
fn plan_reads_the_membership_from_the_agents_status_socket_and_applies_the_selector() {
    use std::io::{BufRead, BufReader, Write};
    let h = Haproxy::start_slots("web", 3);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("haserf.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let reply = r#"{"members":[
          {"name":"p","addr":"10.8.0.1","port":7946,"tags":{"role":"web","env":"prod","port":"81"},"status":"alive"},
          {"name":"q","addr":"10.8.0.2","port":7946,"tags":{"role":"web","env":"dev","port":"82"},"status":"alive"}]}"#
            .replace('\n', "");
        (&s).write_all(format!("{reply}\n").as_bytes()).unwrap();
        line
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haserf"))
        .args(["plan", "--haproxy-socket"])
        .arg(h.admin_socket())
        .arg("--status-socket")
        .arg(&sock)
        .args(["--backend", "web=role=web,env=prod", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked = server.join().unwrap();
    assert_eq!(asked.trim(), r#"{"cmd":"members"}"#);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cmds: Vec<&str> = v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(cmds[0].ends_with("addr 10.8.0.1 port 81"), "{cmds:?}");
    assert!(
        cmds.iter().all(|c| !c.contains("10.8.0.2")),
        "q is not env=prod"
    );
}

#[test]
fn replies_without_the_blank_line_terminator_do_not_break_a_batch() {
    // 2.6 answers `del server` with a single newline (no blank line); the prompt-mode
    // framing still gives one reply per command
    let h = Haproxy::start_slots("web", 3);
    let client = Client::new(&h.admin_socket().display().to_string());
    let lines: Vec<String> = [
        "del server web/nope",
        "del server web/web3",
        "show cli level",
        "set server web/web1 state maint",
        "show backend",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = rt().block_on(client.exchange(&lines)).unwrap();
    assert_eq!(r.len(), 5, "{r:?}");
    assert_eq!(r[0], "No such server.\n");
    assert_eq!(r[1], "Server deleted.\n");
    assert_eq!(r[2], "admin\n");
    assert_eq!(r[3], "");
    assert!(r[4].starts_with("# name\n"), "{:?}", r[4]);
}
