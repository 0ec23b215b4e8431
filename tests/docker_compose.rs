//! The docker/ deployment, end to end: build the images (no registry), bring the compose
//! project up, scale the web nodes up and down under a steady request loop, and check the slot
//! table (HAProxy's stats CSV), that no request failed, that HAProxy was never reloaded, and the
//! status page. Needs a Docker engine and docker-compose (or `docker compose`).
//!
//! The scenario runs once per web-node variant (stock serf, haserf); `WEB_AGENT=serf|haserf`
//! runs just one.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::haproxy::parse_show_stat;
use support::*;

const COMPOSE_FILE: &str = "docker/compose.yaml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `docker compose` (v2) if present, else `docker-compose` (v1); panics with a clear message
/// when there is no Docker engine or no compose.
fn compose_command() -> Vec<String> {
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match engine {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the docker/ test needs a running Docker engine: `docker version` failed: {}\n\
             (apt-get install docker.io docker-compose, start dockerd)",
            text(&o)
        ),
        Err(e) => {
            panic!("the docker/ test needs Docker: {e}\n(apt-get install docker.io docker-compose)")
        }
    }
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|o| o.status.success()) {
        return vec!["docker".into(), "compose".into()];
    }
    let v1 = Command::new("docker-compose").arg("version").output();
    if v1.is_ok_and(|o| o.status.success()) {
        return vec!["docker-compose".into()];
    }
    panic!("the docker/ test needs `docker compose` or `docker-compose` (apt-get install docker-compose)");
}

/// A compose project named after this test process; torn down (containers, network, the
/// per-run image tags) on drop.
struct Project {
    compose: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
    images: Vec<String>,
}

impl Project {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg("300")
            .args(&self.compose)
            .args(["-p", &self.name, "-f", COMPOSE_FILE])
            .args(args)
            .current_dir(repo());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    #[track_caller]
    fn compose(&self, args: &[&str]) -> String {
        let o = run(&mut self.cmd(args));
        assert!(o.status.success(), "compose {args:?} failed:\n{}", text(&o));
        text(&o)
    }

    fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Runs a shell line inside the `ha` container.
    fn ha_exec(&self, script: &str) -> Output {
        let id = self.container("ha");
        run(Command::new("timeout").args(["30", "docker", "exec", &id, "sh", "-c", script]))
    }

    /// How often Docker restarted the `ha` container (it exits when HAProxy or the agent does).
    fn ha_restarts(&self) -> u32 {
        let id = self.container("ha");
        let o = run(Command::new("docker").args(["inspect", "-f", "{{.RestartCount}}", &id]));
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn logs(&self) -> String {
        text(&run(&mut self.cmd(&["logs", "--no-color", "--tail", "60"])))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- compose logs ---\n{}", self.logs());
        }
        let _ = run(&mut self.cmd(&["down", "-v", "--remove-orphans", "-t", "3"]));
        for image in &self.images {
            let _ = run(Command::new("docker").args(["rmi", "-f", image]));
        }
    }
}

/// Removes compose projects of earlier test processes that died without tearing down.
fn remove_stale_projects(compose: &[String]) {
    let o = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ]));
    let names: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for name in names {
        let Some(pid) = name
            .strip_prefix("haserf-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(Command::new("timeout")
                .arg("120")
                .args(compose)
                .args(["-p", &name, "-f", COMPOSE_FILE, "down", "-v", "-t", "1"])
                .current_dir(repo()));
        }
    }
}

/// The `web` slots from HAProxy's stats page CSV: (slot, status, addr).
fn slot_table(stats: std::net::SocketAddr) -> Result<Vec<(String, String, String)>, String> {
    let resp = http_get(stats, "/stats;csv").map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("stats page status {}", resp.status));
    }
    Ok(parse_show_stat(&resp.body)
        .into_iter()
        .filter(|r| r.proxy() == "web" && r.get("type") == "2")
        .map(|r| {
            (
                r.server().to_string(),
                r.status().to_string(),
                r.addr().to_string(),
            )
        })
        .collect())
}

/// Waits until exactly `n` slots are UP, on `n` distinct addresses, and every other is MAINT.
#[track_caller]
fn wait_for_up_slots(stats: std::net::SocketAddr, n: usize, timeout: Duration) {
    wait_until(timeout, &format!("exactly {n} web slots UP"), || {
        let t = slot_table(stats)?;
        let up: Vec<_> = t.iter().filter(|(_, s, _)| s == "UP").collect();
        let addrs: BTreeSet<&String> = up.iter().map(|(_, _, a)| a).collect();
        let others_maint = t.iter().all(|(_, s, _)| s == "UP" || s == "MAINT");
        if up.len() == n && addrs.len() == n && others_maint && t.len() == 20 {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                t.iter()
                    .filter(|(_, s, _)| s != "MAINT")
                    .collect::<Vec<_>>()
            ))
        }
    })
}

fn haproxy_identity(p: &Project) -> (String, String) {
    let o = p.ha_exec("echo 'show info' | socat -t 5 - UNIX-CONNECT:/run/haproxy/admin.sock");
    let info = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    (field("Pid:"), field("Start_time_sec:"))
}

#[test]
fn compose_scales_web_nodes_into_slots_and_drains_them_without_a_failed_request() {
    let compose = compose_command();
    remove_stale_projects(&compose);
    // Both web-node variants, one after the other: stock serf, and haserf in backend-node
    // mode. WEB_AGENT=serf|haserf runs just one.
    let variants: Vec<String> = match std::env::var("WEB_AGENT") {
        Ok(v) => vec![v],
        Err(_) => vec!["serf".into(), "haserf".into()],
    };
    for web_agent in &variants {
        eprintln!("--- web nodes running {web_agent} ---");
        scale_up_and_down(&compose, web_agent);
    }
}

#[test]
fn compose_publishes_on_loopback_by_default_under_a_fixed_project_name() {
    let compose = compose_command();
    let o = run(Command::new(&compose[0])
        .args(&compose[1..])
        .args(["-f", COMPOSE_FILE, "config"])
        .current_dir(repo())
        .env_remove("HA_BIND")
        .env_remove("COMPOSE_PROJECT_NAME"));
    assert!(o.status.success(), "{}", text(&o));
    let config = String::from_utf8_lossy(&o.stdout).into_owned();
    let published: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("- ") && l.contains(":80"))
        .collect();
    assert!(!published.is_empty(), "{config}");
    for p in &published {
        assert!(
            p.starts_with("- 127.0.0.1:"),
            "published beyond loopback: {p}"
        );
    }
    let env = std::fs::read_to_string(repo().join("docker/.env")).unwrap();
    assert!(
        env.lines().any(|l| l == "COMPOSE_PROJECT_NAME=haserf"),
        "docker/.env names the project: {env}"
    );
}

/// Brings the project up with 2 web nodes running `web_agent`, scales to 5 and back to 2
/// under a request loop, checks slots, failures, HAProxy's identity and the status page.
fn scale_up_and_down(compose: &[String], web_agent: &str) {
    let pid = std::process::id();
    let ha_image = format!("haserf-ha:test-{pid}-{web_agent}");
    let web_image = format!("haserf-web:test-{pid}-{web_agent}");

    let build = run(Command::new("timeout")
        .args(["900", "scripts/docker-build.sh"])
        .current_dir(repo())
        .env("HASERF_BIN", env!("CARGO_BIN_EXE_haserf"))
        .env("HASERF_HA_IMAGE", &ha_image)
        .env("HASERF_WEB_IMAGE", &web_image));
    assert!(
        build.status.success(),
        "scripts/docker-build.sh failed:\n{}",
        text(&build)
    );

    let bind = alloc_ip();
    let (http_port, stats_port, status_port) =
        (free_port_on(bind), free_port_on(bind), free_port_on(bind));
    let project = Project {
        compose: compose.to_vec(),
        name: format!("haserf-test-{pid}-{web_agent}"),
        env: vec![
            ("HASERF_HA_IMAGE".into(), ha_image.clone()),
            ("HASERF_WEB_IMAGE".into(), web_image.clone()),
            ("HA_BIND".into(), bind.to_string()),
            ("HA_HTTP_PORT".into(), http_port.to_string()),
            ("HA_STATS_PORT".into(), stats_port.to_string()),
            ("HA_STATUS_PORT".into(), status_port.to_string()),
            ("WEB_AGENT".into(), web_agent.to_string()),
            // One variable turns on gossip encryption for every container.
            ("SERF_ENCRYPT_KEY".into(), support::serf::serf_keygen()),
        ],
        images: vec![ha_image, web_image],
    };
    let frontend = std::net::SocketAddr::from((bind, http_port));
    let stats = std::net::SocketAddr::from((bind, stats_port));

    project.compose(&["up", "-d", "--scale", "web=2"]);
    wait_until(
        Duration::from_secs(60),
        "HAProxy in the ha container",
        || {
            let restarts = project.ha_restarts();
            assert_eq!(
            restarts, 0,
            "the ha container exited and was restarted (is `haserf agent` implemented?); logs:\n{}",
            project.logs()
        );
            let (pid, _) = haproxy_identity(&project);
            if pid.is_empty() {
                Err("no answer to `show info` yet")
            } else {
                Ok(())
            }
        },
    );
    wait_for_up_slots(stats, 2, Duration::from_secs(90));
    let identity = haproxy_identity(&project);
    assert!(
        !identity.0.is_empty(),
        "no `show info` from the ha container"
    );

    let requests = RequestLoop::start(
        frontend,
        "/",
        LoopLimits {
            interval: Duration::from_millis(20),
            max_duration: Duration::from_secs(300),
            ..LoopLimits::default()
        },
    );

    // Scale up: 3 more nodes take free slots, and all 5 answer requests.
    project.compose(&["up", "-d", "--scale", "web=5"]);
    wait_for_up_slots(stats, 5, Duration::from_secs(90));
    wait_until(
        Duration::from_secs(30),
        "requests answered by 5 web nodes",
        || {
            let s = requests.snapshot();
            if s.by_host.len() >= 5 {
                Ok(())
            } else {
                Err(s)
            }
        },
    );

    // Scale down: 3 nodes leave gracefully; their slots drain back to MAINT.
    project.compose(&["up", "-d", "--scale", "web=2"]);
    wait_for_up_slots(stats, 2, Duration::from_secs(90));
    let after_down = requests.snapshot().ok;
    wait_until(
        Duration::from_secs(30),
        "50 more answers after the scale-down",
        || {
            let s = requests.snapshot();
            if s.ok >= after_down + 50 {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    let result = requests.stop();
    eprintln!(
        "request loop: {} ok, {} failed, per node {:?}",
        result.ok, result.failed, result.by_host
    );
    assert_eq!(
        result.failed, 0,
        "requests failed while scaling: {result:?}"
    );
    assert!(result.ok > 100, "{result:?}");
    // node names people recognise: the container's name, not its id
    let name = regex::Regex::new(&format!("^{}[_-]web[_-][0-9]+$", project.name)).unwrap();
    for host in result.by_host.keys() {
        assert!(
            name.is_match(host),
            "node name {host:?} is not <project>_web_<n>"
        );
    }

    // switching the web nodes' agent the rolling way: one container at a time, no failure
    let other = if web_agent == "serf" {
        "haserf"
    } else {
        "serf"
    };
    let requests = RequestLoop::start(
        frontend,
        "/",
        LoopLimits {
            interval: Duration::from_millis(20),
            max_duration: Duration::from_secs(300),
            ..LoopLimits::default()
        },
    );
    let mut rolling = Command::new("timeout");
    rolling
        .args(["600", "scripts/docker-rolling.sh"])
        .current_dir(repo())
        .env("COMPOSE", project.compose.join(" "))
        .env("COMPOSE_PROJECT_NAME", &project.name);
    for (k, v) in &project.env {
        rolling.env(k, v);
    }
    rolling.env("WEB_AGENT", other);
    let o = run(&mut rolling);
    assert!(o.status.success(), "docker-rolling.sh:\n{}", text(&o));
    wait_for_up_slots(stats, 2, Duration::from_secs(90));
    let rolled = requests.stop();
    eprintln!(
        "rolling to {other}: {} ok, {} failed",
        rolled.ok, rolled.failed
    );
    assert_eq!(
        rolled.failed, 0,
        "requests failed while rolling: {rolled:?}"
    );
    for id in project.compose(&["ps", "-q", "web"]).lines() {
        let o = run(Command::new("docker").args(["inspect", "-f", "{{json .Config.Env}}", id]));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("WEB_AGENT={other}")),
            "web container {id} still runs the old settings"
        );
    }

    assert_eq!(
        haproxy_identity(&project),
        identity,
        "HAProxy was restarted or reloaded while scaling (pid/start time changed)"
    );

    let status = std::net::SocketAddr::from((bind, status_port));
    let page = wait_until(
        Duration::from_secs(20),
        "the status page",
        || match http_get(status, "/?format=json") {
            Ok(r) if r.status == 200 => Ok(r),
            Ok(r) => Err(format!("status {} {:.200}", r.status, r.body)),
            Err(e) => Err(e.to_string()),
        },
    );
    let v: serde_json::Value = serde_json::from_str(&page.body)
        .unwrap_or_else(|e| panic!("status page is not JSON ({e}): {}", page.body));
    assert!(v.to_string().contains("web"), "status page: {}", page.body);

    let o = project.ha_exec("haserf slots --format json --status-socket /run/haserf/haserf.sock");
    let slots: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("haserf slots json ({e}): {}", text(&o)));
    let filled = slots["slots"]
        .as_array()
        .map(|a| a.iter().filter(|s| !s["member"].is_null()).count());
    assert_eq!(filled, Some(2), "haserf slots: {slots}");
}
