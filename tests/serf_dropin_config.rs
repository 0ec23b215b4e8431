//! A typical `serf agent` JSON config, with every key serf users write, starts
//! `haserf agent` next to real serf peers: each key haserf does not implement gives exactly
//! one startup warning saying why, the implemented ones act (the config's event handler
//! runs, the tags file is written, `leave_on_terminate: false` makes SIGTERM a silent stop),
//! and two `--config` files plus a `--config-dir` merge as serf merges them. A
//! `retry_join` that never answers gives up after `retry_max_attempts`, as serf does.

mod support;

use std::time::Duration;

use serde_json::json;
use support::agent::run_haserf;
use support::{alloc_ip, wait_until, HaserfAgent, HaserfOptions, SerfOptions, SerfPeer};

const IGNORED: &[&str] = &[
    "enable_syslog",
    "replay_on_join",
    "disable_coordinates",
    "interface",
    "discover",
    "protocol",
    "statsd_addr",
];

#[test]
fn a_typical_serf_config_with_every_key_starts_the_agent_with_one_warning_per_ignored_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seed = SerfPeer::start(SerfOptions::new("seed"));
    let ip = alloc_ip();
    let marker = d.join("joined-by-handler");
    let base = json!({
        "node_name": "from-file",
        "bind": format!("{ip}:7946"),
        "advertise": format!("{ip}:7946"),
        "tags": {"role": "web", "dc": "one"},
        "start_join": [seed.bind_addr().to_string()],
        "retry_join": [seed.bind_addr().to_string()],
        "log_level": "info",
        "profile": "local",
        "rpc_addr": format!("{ip}:7373"),
        "rpc_auth": "secret",
        "event_handlers": [format!("member-join=touch {}", marker.display())],
        "snapshot_path": d.join("snap").display().to_string(),
        "retry_interval": "5s",
        "retry_max_attempts": 3,
        "reconnect_timeout": "8h",
        "tombstone_timeout": "8h",
        "leave_on_terminate": false,
        "skip_leave_on_interrupt": true,
        "enable_syslog": true,
        "replay_on_join": false,
        "disable_coordinates": true,
        "interface": "lo",
        "discover": "cluster",
        "protocol": 5,
        "tags_file": d.join("tags.json").display().to_string(),
        "broadcast_timeout": "5s",
        "rejoin_after_leave": true,
        "query_response_size_limit": 1024,
        "statsd_addr": "127.0.0.1:8125",
    });
    std::fs::write(d.join("serf.json"), base.to_string()).unwrap();
    // a second file and a directory, merged after it as serf does: tags merge key by key
    std::fs::write(d.join("override.json"), r#"{"tags":{"dc":"two"}}"#).unwrap();
    let conf_d = d.join("serf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(conf_d.join("50-zone.json"), r#"{"tags":{"zone":"a"}}"#).unwrap();
    let mut opts = HaserfOptions::member("from-file").args(&[
        &format!("--config={}", d.join("serf.json").display()),
        &format!("--config={}", d.join("override.json").display()),
        &format!("--config-dir={}", conf_d.display()),
    ]);
    opts.ip = Some(ip);
    let agent = HaserfAgent::start(opts);
    seed.wait_status("from-file", "alive", Duration::from_secs(20));
    let tags = seed
        .members()
        .into_iter()
        .find(|m| m.name == "from-file")
        .unwrap()
        .tags;
    assert_eq!(tags.get("dc").map(String::as_str), Some("two"), "{tags:?}");
    assert_eq!(tags.get("zone").map(String::as_str), Some("a"), "{tags:?}");
    assert_eq!(
        tags.get("role").map(String::as_str),
        Some("web"),
        "{tags:?}"
    );
    wait_until(
        Duration::from_secs(10),
        "the config's event handler ran",
        || {
            if marker.exists() {
                Ok(())
            } else {
                Err("no marker")
            }
        },
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("tags.json")).unwrap()).unwrap();
    assert_eq!(saved, json!({"role": "web", "dc": "two", "zone": "a"}));
    let log = agent.log();
    for key in IGNORED {
        let warnings = log
            .matches(&format!("config key \"{key}\" is ignored"))
            .count()
            + log
                .matches(&format!("config key \\\"{key}\\\" is ignored"))
                .count();
        assert_eq!(warnings, 1, "{key}: one warning\n{log}");
    }
    // leave_on_terminate: false: SIGTERM stops without a leave, the cluster sees a failure
    agent.signal("TERM");
    seed.wait_status("from-file", "failed", Duration::from_secs(20));
}

#[test]
fn retry_join_gives_up_after_retry_max_attempts_like_serf() {
    let dir = tempfile::tempdir().unwrap();
    let ip = alloc_ip();
    let nobody = alloc_ip();
    let cfg = dir.path().join("serf.json");
    std::fs::write(
        &cfg,
        json!({"retry_join": [format!("{nobody}:7946")], "retry_interval": "1s", "retry_max_attempts": 2})
            .to_string(),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let (ok, out, err) = run_haserf(&[
        "agent",
        "--node=lonely",
        &format!("--bind={ip}:7946"),
        "--profile=local",
        &format!("--status-socket={}", dir.path().join("s.sock").display()),
        &format!("--config={}", cfg.display()),
    ]);
    assert!(!ok, "the agent gave up with an error: {out}{err}");
    assert!(err.contains("retry_max_attempts"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
}
