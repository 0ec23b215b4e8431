//! The example haproxy/haproxy.cfg is valid, without a warning, for the HAProxy under test
//! (`$HASERF_HAPROXY`, else the one on PATH; every supported version in scripts/test.sh).

mod support;

#[test]
fn the_example_haproxy_cfg_is_accepted_by_haproxy_without_a_warning() {
    let bin = support::require_binary("haproxy");
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/haproxy/haproxy.cfg");
    // -dW: zero-warning mode, any warning makes the check fail.
    let out = std::process::Command::new(bin)
        .args(["-dW", "-c", "-f", cfg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "haproxy -c rejected {cfg}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(cfg).unwrap();
    assert!(text.contains("server-template web 1-50 127.0.0.1:8080 check disabled"));
    assert!(text.contains("level admin"));
    assert!(text.contains("dynamic-cookie-key"));
}
