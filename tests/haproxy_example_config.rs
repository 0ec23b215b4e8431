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
    std::fs::write(&cfg, example_cfg_in_repo(&map)).unwrap();
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
    assert!(text.contains("server-template web 1-50 127.0.0.1:3000 check disabled"));
    assert!(text.contains("level admin"));
    assert!(text.contains("dynamic-cookie-key"));
}
