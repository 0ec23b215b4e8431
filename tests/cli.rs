//! The `haserf` command line as users meet it: help, keygen accepted by a real serf agent,
//! clear errors for bad arguments.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{alloc_ip, require_binary, wait_until, Launch, Proc};

fn haserf(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_haserf"))
        .args(args)
        .output()
        .expect("run haserf")
}

#[test]
fn help_lists_every_subcommand_of_the_design() {
    let out = haserf(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "agent", "members", "slots", "status", "leave", "metrics", "keygen", "verify", "plan",
    ] {
        assert!(text.contains(sub), "--help lacks {sub}:\n{text}");
    }
}

#[test]
fn agent_help_lists_the_design_flags() {
    let out = haserf(&["agent", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--node",
        "--bind",
        "--advertise",
        "--join",
        "--tag",
        "--encrypt",
        "--keyring-file",
        "--haproxy-socket",
        "--backend",
        "--status-socket",
        "--spoe-bind",
        "--config",
        "--log-level",
        "--log-format",
        "--allow-cidr",
        "--metrics-bind",
    ] {
        assert!(text.contains(flag), "agent --help lacks {flag}");
    }
}

#[test]
fn an_unknown_flag_is_a_usage_error_with_exit_status_2() {
    let out = haserf(&["members", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
}

#[test]
fn a_client_without_a_running_agent_says_where_it_looked() {
    // `status` exits 2 (agent unreachable, distinct from 1 "not ready"); the others exit 1
    for (cmd, code) in [
        ("status", 2),
        ("members", 1),
        ("slots", 1),
        ("metrics", 1),
        ("leave", 1),
    ] {
        let out = haserf(&[cmd, "--status-socket", "/nonexistent/haserf.sock"]);
        assert_eq!(out.status.code(), Some(code), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/nonexistent/haserf.sock"), "{cmd}: {err}");
    }
}

#[test]
fn keygen_prints_a_key_that_a_real_serf_agent_runs_with() {
    let serf = require_binary("serf");
    let out = haserf(&["keygen"]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ip = alloc_ip();
    let bind = format!("-bind={ip}:7946");
    let rpc = format!("-rpc-addr={ip}:7373");
    let encrypt = format!("-encrypt={key}");
    let _agent = Proc::spawn(Launch::new(
        serf.to_str().unwrap(),
        &["agent", "-node=keygen-check", &bind, &rpc, &encrypt],
        dir.path().join("serf.log"),
    ));
    let info = wait_until(
        Duration::from_secs(20),
        "serf info to report encryption",
        || {
            let out = Command::new(&serf)
                .args(["info", "-format=json", &rpc])
                .output()
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && text.contains("\"encrypted\"") {
                Ok(text)
            } else {
                Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        },
    );
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["serf"]["encrypted"], "true", "{info}");
}
