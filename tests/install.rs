//! `scripts/install.sh` then `systemd-analyze verify`: the documented install step puts the
//! binary, the unit, /etc/default/haserf and the HAProxy companion files where the unit, the
//! example haproxy.cfg and the docs expect them, and systemd accepts the installed unit.
//! Installed under a temporary root (`--root`) with a copy of this machine's own unit files,
//! so nothing on the machine changes and no systemd needs to run.

mod support;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn install(root: &Path) {
    let (ok, out, err) = run(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/install.sh"
    ))
    .arg("--root")
    .arg(root)
    .arg("--bin")
    .arg(env!("CARGO_BIN_EXE_haserf")));
    assert!(ok, "install.sh failed:\n{out}{err}");
}

#[test]
fn install_sh_then_systemd_analyze_verify_passes_on_the_installed_unit() {
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze not found: apt-get install systemd (scripts/install-deps.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("var/lib/haproxy")).unwrap();
    install(root);
    for f in [
        "usr/local/bin/haserf",
        "etc/systemd/system/haserf.service",
        "etc/default/haserf",
        "etc/haproxy/haserf.lua",
        "etc/haproxy/haserf-spoe.conf",
        "usr/local/share/doc/haserf/agent.md",
        // the example haproxy.cfg reads it: HAProxy refuses to start without the file
        "var/lib/haproxy/haserf/served-by.map",
    ] {
        assert!(root.join(f).is_file(), "{f} not installed");
    }
    assert!(
        root.join("var/lib/haproxy/haserf").is_dir(),
        "chroot socket dir"
    );
    let (ok, version, _) = run(Command::new(root.join("usr/local/bin/haserf")).arg("--version"));
    assert!(ok && version.starts_with("haserf "), "{version}");

    // the unit: readiness, limits, nothing a config could also set
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/haserf.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/haserf agent $HASERF_OPTS",
        "EnvironmentFile=-/etc/default/haserf",
        "LimitNOFILE=65536",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RuntimeDirectory=haserf",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}");
    }
    assert!(!unit.contains("ExecStop="), "SIGTERM is the graceful leave");
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        settings.iter().all(|l| !l.contains("--")),
        "no hard-coded flag in the unit: {settings:?}"
    );

    // systemd accepts it (the machine's own units give it sysinit.target & co)
    let units = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&units).unwrap();
    let (ok, _, err) = run(Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(&units));
    assert!(ok, "{err}");
    let mut root_arg = std::ffi::OsString::from("--root=");
    root_arg.push(root);
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&root_arg)
        .arg("haserf.service"));
    assert!(
        ok && err.trim().is_empty(),
        "systemd-analyze verify:\n{out}{err}"
    );

    // the example haproxy.cfg works with the installed companion files and served-by map
    let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/haproxy/haproxy.cfg"))
        .unwrap()
        .replace("/etc/haproxy/", &format!("{}/etc/haproxy/", root.display()))
        .replace(
            "/var/lib/haproxy/haserf/",
            &format!("{}/var/lib/haproxy/haserf/", root.display()),
        );
    let cfg_path = root.join("etc/haproxy/haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let haproxy = support::require_binary("haproxy");
    let (ok, out, err) = run(Command::new(haproxy).arg("-c").arg("-f").arg(&cfg_path));
    assert!(ok, "haproxy -c on the installed layout:\n{out}{err}");

    // installing again keeps the operator's settings
    let default = root.join("etc/default/haserf");
    std::fs::write(&default, "HASERF_OPTS=\"--node edited\"\n").unwrap();
    install(root);
    assert_eq!(
        std::fs::read_to_string(&default).unwrap(),
        "HASERF_OPTS=\"--node edited\"\n"
    );
}
