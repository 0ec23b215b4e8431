//! The docs' commands run as written on a fresh machine (after scripts/install-deps.sh), and
//! the copy-paste path agrees with itself. A cheap, equivalent check rather than running
//! every snippet (several need a real cluster or systemd as PID 1):
//!
//! - every `haserf …` command parses and validates as written: `src/cli.rs`'s own test
//!   `every_haserf_command_in_the_docs_parses_as_written`;
//! - here, every other program the shell blocks name is installed by install-deps (or is a
//!   base tool), takes the flags written (`serf agent -h`, `haproxy -c`, `haserf-bench … --help`),
//!   and every repository path they name exists (scripts, test files, compose file);
//! - README.md, docs/agent.md, haproxy/haproxy.cfg, systemd/haserf.service,
//!   systemd/haserf.default and scripts/install.sh agree on the admin socket, the status
//!   socket, the health endpoint, the template port, SPOE on and its address, and the paths
//!   install.sh uses.
//!
//! `scripts/install.sh` itself is run by tests/install.rs, the chroot recipe by
//! tests/docs_chroot.rs.

mod support;

use std::path::Path;
use std::process::Command;

use support::doc_blocks::{doc_commands, DocCommand};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Flags (`-x`, `--x`, without `=value`) of a command's words.
fn flags(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| w.starts_with('-') && w.len() > 1 && *w != "--")
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect()
}

fn help_of(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Checks one documented command; `Err` says what is wrong.
fn check(c: &DocCommand) -> Result<bool, String> {
    let w = &c.words;
    let prog = w[0].as_str();
    match prog {
        // installed by scripts/install-deps.sh
        "haproxy" | "serf" | "curl" | "socat" | "systemctl" | "systemd-analyze" | "cargo"
        | "xxd" | "python3" => {
            let found = std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(prog).is_file()));
            if !found {
                return Err(format!(
                    "{prog} is not installed: run scripts/install-deps.sh"
                ));
            }
        }
        p if p.starts_with("scripts/") => {
            let script = repo(p);
            for f in flags(w) {
                if !script.contains(&f) {
                    return Err(format!("{p} does not take {f}"));
                }
            }
            return Ok(true);
        }
        "docker-compose" => {
            let file = w.windows(2).find(|p| p[0] == "-f").map(|p| p[1].clone());
            if let Some(f) = file {
                if !Path::new(ROOT).join(&f).is_file() {
                    return Err(format!("no {f}"));
                }
            }
            return Ok(true);
        }
        "cp" => {
            // copies from the repository
            if !Path::new(ROOT).join(&w[1]).exists() {
                return Err(format!("no {} in the repository", w[1]));
            }
            return Ok(true);
        }
        "target/release/haserf-bench" => {
            let mut args: Vec<&str> = w[1..].iter().map(String::as_str).collect();
            args.push("--help");
            let o = Command::new(env!("CARGO_BIN_EXE_haserf-bench"))
                .args(&args)
                .output()
                .unwrap();
            if !o.status.success() {
                return Err(String::from_utf8_lossy(&o.stderr).into_owned());
            }
            return Ok(true);
        }
        _ => return Ok(false), // config lines, output, diagrams, shell built-ins
    }
    match (prog, w.get(1).map(String::as_str)) {
        ("serf", Some(sub)) => {
            let help = help_of("serf", &[sub, "-h"]);
            for f in flags(&w[2..]) {
                if !help.contains(&format!("{f}=")) && !help.contains(&format!("{f} ")) {
                    return Err(format!("serf {sub} has no {f}"));
                }
            }
        }
        ("haproxy", _) => {
            if let Some(f) = w.windows(2).find(|p| p[0] == "-f").map(|p| &p[1]) {
                let known = ["/etc/haproxy/haproxy.cfg", "haproxy/haproxy.cfg"];
                if !known.contains(&f.as_str()) {
                    return Err(format!("unknown config {f}"));
                }
            }
        }
        ("cargo", Some("test")) => {
            if let Some(t) = w.windows(2).find(|p| p[0] == "--test").map(|p| &p[1]) {
                if !Path::new(ROOT).join(format!("tests/{t}.rs")).is_file() {
                    return Err(format!("no tests/{t}.rs"));
                }
            }
        }
        ("curl", _) => {
            let url = w
                .iter()
                .find(|a| a.starts_with("http"))
                .cloned()
                .unwrap_or_default();
            let host = url.split('/').nth(2).unwrap_or("");
            if !(host.starts_with("localhost") || host.starts_with("127.")) {
                return Err(format!("{url}: examples stay on this machine"));
            }
        }
        _ => {}
    }
    Ok(true)
}

#[test]
fn every_command_in_the_docs_names_an_installed_program_with_flags_it_takes() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for c in doc_commands(Path::new(ROOT)) {
        if c.words[0] == "haserf" {
            continue; // src/cli.rs tests these against the real command line
        }
        match check(&c) {
            Ok(true) => checked += 1,
            Ok(false) => {}
            Err(e) => failures.push(format!("{}: `{}`: {e}", c.at, c.text)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 25, "only {checked} commands recognised");
}

/// The value after `key` on the first line of `text` that contains `key`.
fn after<'a>(text: &'a str, key: &str) -> &'a str {
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no {key:?} in\n{text}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches('"')
}

#[test]
fn readme_agent_md_haproxy_cfg_and_the_systemd_files_agree() {
    let cfg = repo("haproxy/haproxy.cfg");
    let unit = repo("systemd/haserf.service");
    let default = repo("systemd/haserf.default");
    let install = repo("scripts/install.sh");
    let readme = repo("README.md");
    let agent_md = repo("docs/agent.md");
    let opts = after(&default, "HASERF_OPTS=\"");
    let opts_line = default
        .lines()
        .find(|l| l.starts_with("HASERF_OPTS="))
        .unwrap();

    // the admin socket
    let admin = after(&cfg, "stats socket ");
    assert_eq!(admin, "/run/haproxy/admin.sock");
    assert_eq!(after(opts_line, "--haproxy-socket "), admin, "{opts}");
    assert!(readme.contains(&format!("stats socket {admin} mode 660 level admin")));
    assert!(agent_md.contains(&format!("stats socket {admin} mode 660 level admin")));
    assert!(
        unit.contains("ReadWritePaths=/run/haproxy "),
        "the unit may reach it"
    );

    // the server-state file: the agent writes where HAProxy reads, in a directory the unit
    // may write
    let state = after(&cfg, "server-state-file ");
    assert_eq!(after(opts_line, "--server-state-file "), state, "{opts}");
    assert!(cfg.contains("load-server-state-from-file global"));
    assert!(unit.contains(&format!(
        "ReadWritePaths=/run/haproxy /run/haserf -{}",
        std::path::Path::new(state).parent().unwrap().display()
    )));
    for text in [&readme, &agent_md] {
        assert!(text.contains(&format!("server-state-file {state}")));
    }

    // the status socket: the agent's default, HAProxy's Lua, the unit's runtime directory
    assert_eq!(
        after(&cfg, "setenv HASERF_STATUS_SOCKET "),
        haserf::control::DEFAULT_STATUS_SOCKET
    );
    assert!(haserf::control::DEFAULT_STATUS_SOCKET.starts_with("/run/haserf/"));
    assert!(unit.lines().any(|l| l == "RuntimeDirectory=haserf"));

    // the health endpoint and the template port, everywhere the slots are shown
    let template =
        "server-template web 1-50 slot.invalid:3000 check disabled init-addr last,127.0.0.1";
    for (name, text) in [
        ("haproxy.cfg", &cfg),
        ("README.md", &readme),
        ("agent.md", &agent_md),
    ] {
        assert!(text.contains("option httpchk GET /healthz"), "{name}");
        assert!(text.contains(template), "{name}: {template}");
    }
    assert!(repo("docs/haproxy.md").contains(template));
    assert!(repo("docker/web/app.py").contains("\"/healthz\""));
    assert!(repo("docker/ha/haproxy.cfg").contains("option httpchk GET /healthz"));
    for text in [&readme, &agent_md] {
        assert!(
            text.contains("-tag port=3000"),
            "web nodes on the template port"
        );
    }

    // SPOE: on in the example config, served where the agent's flags say
    let spoe = after(&cfg, "server haserf ");
    assert!(cfg.contains("filter spoe engine haserf config /etc/haproxy/haserf-spoe.conf"));
    assert_eq!(after(opts_line, "--spoe-bind "), spoe);
    assert!(agent_md.contains(&format!("--spoe-bind {spoe}")));

    // install.sh puts the files where the unit and the config name them
    assert!(unit.contains("ExecStart=/usr/local/bin/haserf agent $HASERF_OPTS"));
    assert!(unit.contains("EnvironmentFile=-/etc/default/haserf"));
    for (src, dst) in [
        ("\"$BIN\"", "\"$ROOT/usr/local/bin/haserf\""),
        (
            "systemd/haserf.service",
            "\"$ROOT/etc/systemd/system/haserf.service\"",
        ),
        ("systemd/haserf.default", "\"$ROOT/etc/default/haserf\""),
        ("lua/haserf.lua", "\"$ROOT/etc/haproxy/haserf.lua\""),
        (
            "haproxy/spoe.conf",
            "\"$ROOT/etc/haproxy/haserf-spoe.conf\"",
        ),
    ] {
        assert!(
            install.contains(&format!("{src} {dst}")),
            "install.sh: {src} → {dst}"
        );
    }
    assert!(cfg.contains("lua-load /etc/haproxy/haserf.lua"));

    // metrics where the docs tell Prometheus to look
    let metrics = after(opts_line, "--metrics-bind ");
    assert!(
        readme.contains(&format!("http://{metrics}/metrics")),
        "{metrics}"
    );

    // the chroot recipe: inside the chroot for the agent, relative to it for HAProxy
    assert!(default.contains("HASERF_STATUS_SOCKET=/var/lib/haproxy/haserf/haserf.sock"));
    assert!(agent_md.contains("HASERF_STATUS_SOCKET=/var/lib/haproxy/haserf/haserf.sock"));
    assert!(agent_md.contains("setenv HASERF_STATUS_SOCKET /haserf/haserf.sock"));
    assert!(unit.contains("-/var/lib/haproxy/haserf"));
    assert!(install.contains("/var/lib/haproxy/haserf"));

    // socat is shown in the docs: install-deps installs it
    assert!(repo("scripts/install-deps.sh").contains("need+=(socat)"));
}
