//! The example haproxy/haproxy.cfg is valid, without a warning, for the HAProxy under test
//! (`$HASERF_HAPROXY`, else the one on PATH; every supported version in scripts/test.sh), with
//! the companion files at the places scripts/install.sh puts them (/etc/haproxy/haserf.lua
//! and /etc/haproxy/haserf-spoe.conf, here pointed at their sources in the repository).

mod support;

/// The example config with its /etc/haproxy companion paths pointed at the repository and
/// its served-by map at `map` (install.sh creates the real one empty).
fn example_cfg_in_repo(map: &std::path::Path) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{root}/haproxy/haproxy.cfg"))
        .unwrap()
        .replace(
            "/var/lib/haproxy/haserf/served-by.map",
            &map.display().to_string(),
        )
        .replace("/etc/haproxy/haserf.lua", &format!("{root}/lua/haserf.lua"))
        .replace(
            "/etc/haproxy/haserf-spoe.conf",
            &format!("{root}/haproxy/spoe.conf"),
        )
}

#[test]
fn the_example_haproxy_cfg_is_accepted_by_haproxy_without_a_warning() {
    let bin = support::require_binary("haproxy");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    let map = dir.path().join("served-by.map");
    std::fs::write(&map, "").unwrap();
    // the server-state file as the agent writes it (HAProxy 2.6 warns while it is missing)
    let state = dir.path().join("server-state");
    std::fs::write(&state, "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n").unwrap();
    std::fs::write(
        &cfg,
        example_cfg_in_repo(&map).replace(
            "/var/lib/haproxy/haserf/server-state",
            &state.display().to_string(),
        ),
    )
    .unwrap();
    // -dW: zero-warning mode, any warning makes the check fail.
    let out = std::process::Command::new(bin)
        .args(["-dW", "-c", "-f"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c rejected haproxy/haproxy.cfg:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/haproxy/haproxy.cfg"))
        .unwrap();
    assert!(text.contains(
        "server-template web 1-50 slot.invalid:3000 check disabled init-addr last,127.0.0.1"
    ));
    assert!(text.contains("server-state-file /var/lib/haproxy/haserf/server-state"));
    assert!(text.contains("load-server-state-from-file global"));
    assert!(text.contains("level admin"));
    assert!(text.contains("dynamic-cookie-key"));
}
