//! End to end, on several hosts as users run it: network namespaces on a private bridge
//! (tests/support/netns.rs). An `lb` host runs HAProxy (a slotted backend) and
//! `haserf agent --haproxy-socket … --backend web`; six web hosts run an HTTP app, four with
//! stock `serf agent`, two with `haserf agent` in backend-node mode; a `client` host sends
//! steady load through HAProxy (the `haserf-bench loadgen` generator, one line per request).
//!
//! Every scenario asserts zero failed requests unless its name says otherwise, and that
//! HAProxy's pid never changes except where the scenario restarts it.
//!
//! `cargo test` runs all eight (about 35 s on 2 cores; see docs/e2e.md).

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{
    serf::SerfOptions, wait_until, Haproxy, HaproxyConfig, Lab, Launch, NsHost, Proc, SerfPeer,
};

const HASERF: &str = env!("CARGO_BIN_EXE_haserf");
const BENCH: &str = env!("CARGO_BIN_EXE_haserf-bench");
const APP_PORT: u16 = 8080;
const GOSSIP_PORT: u16 = 7946;
/// Requests per second of the steady load.
const RATE: u32 = 50;

/// The scenarios share the 2-core machine; one at a time keeps their timings honest.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What runs on a web host next to the app.
enum WebAgent {
    Serf(Box<SerfPeer>),
    Haserf(Proc),
    Stopped,
}

struct Web {
    name: String,
    app: Option<Proc>,
    agent: WebAgent,
    host: NsHost,
}

impl Web {
    fn app_addr(&self) -> String {
        format!("{}:{APP_PORT}", self.host.ip())
    }
}

/// The steady load from the client host: `haserf-bench loadgen`, one line per finished
/// request (`start_us end_us code node`), read back from its log.
struct Load {
    proc: Proc,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    start: u64,
    code: u16,
}

impl Load {
    fn samples(&self) -> Vec<(Sample, String)> {
        self.proc
            .log()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() != 4 {
                    return None;
                }
                Some((
                    Sample {
                        start: f[0].parse().ok()?,
                        code: f[2].parse().ok()?,
                    },
                    f[3].to_string(),
                ))
            })
            .collect()
    }

    /// Requests sent at or after `from_us`: (total, failed).
    fn counts_since(&self, from_us: u64) -> (usize, usize) {
        let s = self.samples();
        let mine: Vec<_> = s.iter().filter(|(x, _)| x.start >= from_us).collect();
        let failed = mine
            .iter()
            .filter(|(x, _)| !(200..400).contains(&x.code))
            .count();
        (mine.len(), failed)
    }

    /// Nodes that answered requests sent at or after `from_us`.
    fn served_since(&self, from_us: u64) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (x, node) in self.samples() {
            if x.start >= from_us && (200..400).contains(&x.code) && node != "-" {
                *m.entry(node).or_insert(0) += 1;
            }
        }
        m
    }

    /// Stops the generator and waits for its in-flight requests.
    fn stop(&mut self) {
        self.proc.signal("TERM");
        wait_until(
            Duration::from_secs(15),
            "the load generator to finish",
            || {
                if self.proc.log().lines().any(|l| l == "done") {
                    Ok(())
                } else {
                    Err("no `done` yet")
                }
            },
        );
    }
}

/// The whole topology. Field order is drop order: processes, then hosts, then the lab.
struct Cluster {
    load: Option<Load>,
    agent: Option<Proc>,
    webs: Vec<Web>,
    haproxy: Haproxy,
    client: NsHost,
    lb: NsHost,
    dir: tempfile::TempDir,
    key: Option<String>,
    haproxy_pid: u32,
    _lab: Lab,
}

struct Spec {
    slots: u32,
    serf_webs: usize,
    haserf_webs: usize,
    started: usize,
    key: Option<String>,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            slots: 10,
            serf_webs: 4,
            haserf_webs: 2,
            started: 6,
            key: None,
        }
    }
}

impl Cluster {
    /// lb (HAProxy + haserf agent), client, and web hosts web1… (stock serf first, then
    /// haserf backend-node mode); the first `spec.started` web hosts are started.
    fn start(spec: Spec) -> Cluster {
        let lab = Lab::new();
        let lb = lab.add_host("lb");
        let client = lab.add_host("client");
        let dir = tempfile::Builder::new()
            .prefix("haserf-e2e-")
            .tempdir()
            .expect("temp dir");
        let fe = SocketAddr::from((lb.ip(), 80));
        let stats = SocketAddr::from((lb.ip(), 8404));
        let haproxy =
            Haproxy::start(HaproxyConfig::slots("web", spec.slots, fe, stats).in_netns(lb.netns()));
        let haproxy_pid = haproxy.pid();
        let mut webs = Vec::new();
        for i in 0..spec.serf_webs + spec.haserf_webs {
            let name = format!("web{}", i + 1);
            webs.push(Web {
                host: lab.add_host(&name),
                name,
                app: None,
                agent: WebAgent::Stopped,
            });
        }
        let mut c = Cluster {
            load: None,
            agent: None,
            webs,
            haproxy,
            client,
            lb,
            dir,
            key: spec.key,
            haproxy_pid,
            _lab: lab,
        };
        c.start_agent(&[]);
        for i in 0..spec.started {
            c.start_web(i, i >= spec.serf_webs);
        }
        c
    }

    fn status_socket(&self) -> PathBuf {
        self.dir.path().join("lb-haserf.sock")
    }

    fn seed(&self) -> String {
        format!("{}:{GOSSIP_PORT}", self.lb.ip())
    }

    /// Starts (or restarts) the lb's haserf agent and waits until it answers; `join`: seeds
    /// (a restarted agent joins through the web hosts, as a deployment would).
    fn start_agent(&mut self, join: &[String]) {
        let sock = self.status_socket();
        let _ = std::fs::remove_file(&sock);
        let mut args = vec![
            "agent".to_string(),
            "--node".into(),
            "lb".into(),
            "--bind".into(),
            self.seed(),
            "--haproxy-socket".into(),
            self.haproxy.admin_socket().display().to_string(),
            "--backend".into(),
            "web".into(),
            "--status-socket".into(),
            sock.display().to_string(),
        ];
        if let Some(k) = &self.key {
            args.extend(["--encrypt".to_string(), k.clone()]);
        }
        for j in join {
            args.extend(["--join".to_string(), j.clone()]);
        }
        let mut launch = Launch::new(HASERF, &[], self.dir.path().join("lb-haserf.log"));
        launch.args = args;
        let mut p = self.lb.spawn(launch);
        wait_until(
            Duration::from_secs(20),
            "the lb haserf agent to answer",
            || {
                if !p.is_running() {
                    panic!("haserf agent exited:\n{}", p.log());
                }
                // `haserf status` exits 2 while nothing answers (1: not ready yet)
                let code = std::process::Command::new(HASERF)
                    .args(["status", "--status-socket"])
                    .arg(&sock)
                    .output()
                    .map_err(|e| e.to_string())?
                    .status
                    .code();
                if code == Some(2) {
                    Err("no answer yet".to_string())
                } else {
                    Ok(())
                }
            },
        );
        self.agent = Some(p);
    }

    /// Starts web host `i`'s app and agent (`haserf_node`: haserf backend-node mode).
    fn start_web(&mut self, i: usize, haserf_node: bool) {
        let seed = self.seed();
        let key = self.key.clone();
        let dir = self.dir.path().to_path_buf();
        let w = &mut self.webs[i];
        if w.app.is_none() {
            let addr = w.app_addr();
            let launch = Launch::new(
                BENCH,
                &[
                    "app",
                    "--bind",
                    &addr,
                    "--name",
                    &w.name,
                    "--max-secs",
                    "600",
                ],
                dir.join(format!("{}-app.log", w.name)),
            );
            w.app = Some(w.host.spawn(launch));
            let (ip, host) = (w.host.ip(), &w.host);
            wait_until(Duration::from_secs(10), "the app to listen", || {
                host.tcp_connects(ip, APP_PORT)
                    .then_some(())
                    .ok_or("not yet")
            });
        }
        w.agent = if haserf_node {
            let mut args = vec![
                "agent".to_string(),
                "--node".into(),
                w.name.clone(),
                "--bind".into(),
                format!("{}:{GOSSIP_PORT}", w.host.ip()),
                "--join".into(),
                seed,
                "--tag".into(),
                "role=web".into(),
                "--tag".into(),
                format!("port={APP_PORT}"),
                "--status-socket".into(),
                dir.join(format!("{}-haserf.sock", w.name))
                    .display()
                    .to_string(),
            ];
            if let Some(k) = &key {
                args.extend(["--encrypt".to_string(), k.clone()]);
            }
            let mut launch = Launch::new(HASERF, &[], dir.join(format!("{}-haserf.log", w.name)));
            launch.args = args;
            WebAgent::Haserf(w.host.spawn(launch))
        } else {
            let mut o = SerfOptions::new(&w.name)
                .tag("role", "web")
                .tag("port", &APP_PORT.to_string())
                .join(&seed);
            o.ip = Some(w.host.ip());
            o.netns = Some(w.host.netns().to_string());
            if let Some(k) = &key {
                o = o.encrypt(k);
            }
            WebAgent::Serf(Box::new(SerfPeer::start(o)))
        };
    }

    /// Graceful leave of web host `i`'s agent; the app stops once the leave has returned.
    fn leave_web(&mut self, i: usize) {
        let dir = self.dir.path().to_path_buf();
        let w = &mut self.webs[i];
        match std::mem::replace(&mut w.agent, WebAgent::Stopped) {
            WebAgent::Serf(mut p) => p.leave(),
            WebAgent::Haserf(mut p) => {
                let sock = dir.join(format!("{}-haserf.sock", w.name));
                haserf(&sock, &["leave"]).expect("haserf leave");
                p.wait_exit(Duration::from_secs(15));
            }
            WebAgent::Stopped => {}
        }
        w.app = None;
    }

    /// kill -9 of web host `i`'s app and agent.
    fn crash_web(&mut self, i: usize) {
        let w = &mut self.webs[i];
        if let Some(mut a) = w.app.take() {
            a.kill();
        }
        match std::mem::replace(&mut w.agent, WebAgent::Stopped) {
            WebAgent::Serf(mut p) => p.kill(),
            WebAgent::Haserf(mut p) => p.kill(),
            WebAgent::Stopped => {}
        }
    }

    /// Starts the steady load from the client host.
    fn start_load(&mut self) -> u64 {
        let target = format!("{}:80", self.lb.ip());
        let launch = Launch::new(
            BENCH,
            &[
                "loadgen",
                "--target",
                &target,
                "--rate",
                &RATE.to_string(),
                "--timeout-ms",
                "5000",
                "--max-secs",
                "300",
            ],
            self.dir.path().join("loadgen.log"),
        );
        let t = now_us();
        self.load = Some(Load {
            proc: self.client.spawn(launch),
        });
        t
    }

    fn load(&self) -> &Load {
        self.load.as_ref().expect("load started")
    }

    /// The slot table as the agent shows it: member → (slot, addr).
    fn slots(&self) -> Result<BTreeMap<String, (String, String)>, String> {
        let out = haserf(&self.status_socket(), &["slots", "--format", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let mut m = BTreeMap::new();
        for s in v["slots"].as_array().ok_or("no slots array")? {
            if let Some(member) = s["member"].as_str() {
                m.insert(
                    member.to_string(),
                    (
                        s["slot"].to_string().trim_matches('"').to_string(),
                        s["addr"].as_str().unwrap_or("").to_string(),
                    ),
                );
            }
        }
        Ok(m)
    }

    /// HAProxy's own view: addresses of slots in rotation (UP, not MAINT/DRAIN/DOWN).
    fn in_rotation(&self) -> Vec<String> {
        self.haproxy
            .slots("web")
            .iter()
            .filter(|r| r.status().starts_with("UP") && !r.status().contains("DRAIN"))
            .map(|r| r.addr().to_string())
            .collect()
    }

    /// Waits until exactly `names` hold slots and each has served a request sent after `t`.
    fn wait_serving(&self, names: &[&str], t: u64, limit: Duration) {
        wait_until(
            limit,
            &format!("slots and traffic for exactly {names:?}"),
            || {
                let slots = self.slots()?;
                let have: Vec<&str> = slots.keys().map(String::as_str).collect();
                if have != names {
                    return Err(format!("slots held by {have:?}"));
                }
                let served = self.load().served_since(t);
                let missing: Vec<_> = names.iter().filter(|n| !served.contains_key(**n)).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not served yet: {missing:?}; served: {served:?}"))
                }
            },
        );
    }

    /// HAProxy was never restarted or reloaded: same pid as at start.
    fn assert_haproxy_pid_unchanged(&self) {
        assert_eq!(
            self.haproxy.pid(),
            self.haproxy_pid,
            "HAProxy's pid changed"
        );
    }

    fn assert_no_failed_requests_since(&self, from: u64) {
        let (total, failed) = self.load().counts_since(from);
        if failed > 0 {
            // Say when and how: the first and last failures, relative to `from`.
            let bad: Vec<String> = self
                .load()
                .samples()
                .iter()
                .filter(|(x, _)| x.start >= from && !(200..400).contains(&x.code))
                .map(|(x, _)| format!("+{}ms:{}", (x.start - from) / 1000, x.code))
                .collect();
            eprintln!(
                "failed requests (first, last): {:?} … {:?}",
                &bad[..bad.len().min(5)],
                &bad[bad.len().saturating_sub(3)..]
            );
        }
        assert!(total > 0, "no requests were sent");
        assert_eq!(failed, 0, "{failed} of {total} requests failed");
    }
}

/// Runs a haserf client subcommand against a status socket; stdout on success.
fn haserf(sock: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("timeout")
        .args(["-k", "2", "10", HASERF])
        .args(args)
        .arg("--status-socket")
        .arg(sock)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

const ALL: [&str; 6] = ["web1", "web2", "web3", "web4", "web5", "web6"];

#[test]
fn scaling_up_from_three_to_six_web_hosts_fails_no_request() {
    let _g = serial();
    let mut c = Cluster::start(Spec {
        started: 0,
        ..Spec::default()
    });
    // web1, web2: stock serf; web5: haserf backend-node mode.
    c.start_web(0, false);
    c.start_web(1, false);
    c.start_web(4, true);
    let t0 = c.start_load();
    c.wait_serving(&["web1", "web2", "web5"], t0, Duration::from_secs(30));
    // Failures before the first slots fill (503s) are not part of the scenario.
    let ready = now_us();
    let t1 = now_us();
    c.start_web(2, false);
    c.start_web(3, false);
    c.start_web(5, true);
    c.wait_serving(&ALL, t1, Duration::from_secs(30));
    c.load.as_mut().unwrap().stop();
    c.assert_no_failed_requests_since(ready);
    c.assert_haproxy_pid_unchanged();
}

#[test]
fn a_graceful_leave_under_load_fails_no_request() {
    let _g = serial();
    let mut c = Cluster::start(Spec::default());
    let t0 = c.start_load();
    c.wait_serving(&ALL, t0, Duration::from_secs(30));
    // Failures before the first slots fill (503s) are not part of the scenario.
    let ready = now_us();
    let web4 = c.webs[3].app_addr();
    let web6 = c.webs[5].app_addr();
    c.leave_web(3); // stock serf
    c.leave_web(5); // haserf backend node
    let t1 = now_us();
    c.wait_serving(
        &["web1", "web2", "web3", "web5"],
        t1,
        Duration::from_secs(30),
    );
    let rot = c.in_rotation();
    assert!(
        !rot.contains(&web4) && !rot.contains(&web6),
        "left nodes still in rotation: {rot:?}"
    );
    c.load.as_mut().unwrap().stop();
    c.assert_no_failed_requests_since(ready);
    c.assert_haproxy_pid_unchanged();
}

#[test]
fn in_an_encrypted_cluster_an_intruder_without_the_key_never_gets_a_slot() {
    let _g = serial();
    let key = support::serf::serf_keygen();
    let mut c = Cluster::start(Spec {
        key: Some(key),
        ..Spec::default()
    });
    let t0 = c.start_load();
    c.wait_serving(&ALL, t0, Duration::from_secs(30));
    // Failures before the first slots fill (503s) are not part of the scenario.
    let ready = now_us();
    // The intruder: its own host, an app, stock serf with role=web but no key, joining lb.
    let lab_host = c._lab.add_host("intruder");
    let app = lab_host.spawn(Launch::new(
        BENCH,
        &[
            "app",
            "--bind",
            &format!("{}:{APP_PORT}", lab_host.ip()),
            "--name",
            "intruder",
            "--max-secs",
            "300",
        ],
        c.dir.path().join("intruder-app.log"),
    ));
    let log = c.dir.path().join("intruder-serf.log");
    let mut intruder = lab_host.spawn(Launch::new(
        "serf",
        &[
            "agent",
            "-node=intruder",
            &format!("-bind={}:{GOSSIP_PORT}", lab_host.ip()),
            &format!("-rpc-addr={}:7373", lab_host.ip()),
            // Keeps trying for the whole window, as a persistent intruder would.
            &format!("-retry-join={}", c.seed()),
            "-retry-interval=1s",
            "-tag",
            "role=web",
            "-tag",
            &format!("port={APP_PORT}"),
        ],
        &log,
    ));
    // It tries for a while: watch the slots and the traffic the whole time.
    wait_until(
        Duration::from_secs(10),
        "the intruder's serf agent to try joining",
        || {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            log.contains("Joining").then_some(()).ok_or(log)
        },
    );
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        let slots = c.slots().expect("slots");
        assert!(
            !slots.contains_key("intruder"),
            "the intruder got a slot: {slots:?}"
        );
        let intruder_addr = format!("{}:{APP_PORT}", lab_host.ip());
        assert!(
            !c.in_rotation().contains(&intruder_addr),
            "the intruder is in rotation"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.load.as_mut().unwrap().stop();
    assert!(
        !c.load().served_since(t0).contains_key("intruder"),
        "the intruder served traffic"
    );
    let members = haserf(&c.status_socket(), &["members", "--format", "json"]).expect("members");
    assert!(
        !members.contains("\"intruder\""),
        "the intruder is a member: {members}"
    );
    c.assert_no_failed_requests_since(ready);
    c.assert_haproxy_pid_unchanged();
    assert!(
        intruder.is_running(),
        "the intruder gave up early, so the window proves less:\n{}",
        intruder.log()
    );
    intruder.kill();
    drop(app);
}

#[test]
fn a_crash_of_app_and_agent_leaves_rotation_and_reports_failed_requests() {
    let _g = serial();
    let mut c = Cluster::start(Spec::default());
    let t0 = c.start_load();
    c.wait_serving(&ALL, t0, Duration::from_secs(30));
    let addr = c.webs[2].app_addr();
    let t_kill = Instant::now();
    let from = now_us();
    c.crash_web(2);
    wait_until(
        Duration::from_secs(30),
        "the crashed node to leave rotation",
        || {
            let rot = c.in_rotation();
            (!rot.contains(&addr)).then_some(()).ok_or(rot)
        },
    );
    let out_of_rotation = t_kill.elapsed();
    wait_until(
        Duration::from_secs(60),
        "the crashed node to lose its slot",
        || {
            let s = c.slots()?;
            (!s.contains_key("web3"))
                .then_some(())
                .ok_or(format!("{s:?}"))
        },
    );
    c.load.as_mut().unwrap().stop();
    let (total, failed) = c.load().counts_since(from);
    println!(
        "crash: out of rotation after {out_of_rotation:?}; {failed} of {total} requests failed"
    );
    assert!(
        failed <= 5,
        "{failed} of {total} requests failed after a crash (retries and redispatch should hide it)"
    );
    c.assert_haproxy_pid_unchanged();
}

#[test]
fn a_partitioned_web_host_leaves_rotation_and_comes_back_when_healed() {
    let _g = serial();
    let mut c = Cluster::start(Spec::default());
    let t0 = c.start_load();
    c.wait_serving(&ALL, t0, Duration::from_secs(30));
    // Failures before the first slots fill (503s) are not part of the scenario.
    let ready = now_us();
    let addr = c.webs[1].app_addr();
    c.webs[1].host.cut_link();
    wait_until(
        Duration::from_secs(30),
        "the partitioned node to leave rotation",
        || {
            let rot = c.in_rotation();
            (!rot.contains(&addr)).then_some(()).ok_or(rot)
        },
    );
    c.webs[1].host.restore_link();
    let t1 = now_us();
    c.wait_serving(&ALL, t1, Duration::from_secs(60));
    c.load.as_mut().unwrap().stop();
    c.assert_no_failed_requests_since(ready);
    c.assert_haproxy_pid_unchanged();
}

#[test]
fn after_haproxy_restarts_the_agent_refills_every_slot() {
    let _g = serial();
    let mut c = Cluster::start(Spec::default());
    let t0 = c.start_load();
    c.wait_serving(&ALL, t0, Duration::from_secs(30));
    let before = c.haproxy.pid();
    c.haproxy.restart();
    assert_ne!(c.haproxy.pid(), before, "HAProxy did not restart");
    c.haproxy_pid = c.haproxy.pid();
    let t_restart = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "every member back in rotation",
        || {
            let rot = c.in_rotation();
            (rot.len() == 6).then_some(()).ok_or(rot)
        },
    );
    println!(
        "HAProxy restart: all 6 slots back in rotation after {:?}",
        t_restart.elapsed()
    );
    let t1 = now_us();
    c.wait_serving(&ALL, t1, Duration::from_secs(30));
    c.load.as_mut().unwrap().stop();
    c.assert_no_failed_requests_since(t1);
    c.assert_haproxy_pid_unchanged();
}

#[test]
fn restarting_the_haserf_agent_keeps_every_slot_and_fails_no_request() {
    let _g = serial();
    let mut c = Cluster::start(Spec::default());
    let t0 = c.start_load();
    c.wait_serving(&ALL, t0, Duration::from_secs(30));
    // Failures before the first slots fill (503s) are not part of the scenario.
    let ready = now_us();
    let before = c.slots().expect("slots");
    if let Some(mut a) = c.agent.take() {
        a.kill();
    }
    let seeds: Vec<String> = c.webs[..2]
        .iter()
        .map(|w| format!("{}:{GOSSIP_PORT}", w.host.ip()))
        .collect();
    c.start_agent(&seeds);
    wait_until(
        Duration::from_secs(30),
        "the restarted agent to see the same slots",
        || {
            let now = c.slots()?;
            (now == before)
                .then_some(())
                .ok_or(format!("{now:?} vs {before:?}"))
        },
    );
    let t1 = now_us();
    c.wait_serving(&ALL, t1, Duration::from_secs(30));
    c.load.as_mut().unwrap().stop();
    c.assert_no_failed_requests_since(ready);
    c.assert_haproxy_pid_unchanged();
}

#[test]
fn when_slots_run_out_extra_members_wait_and_take_a_freed_slot() {
    let _g = serial();
    let mut c = Cluster::start(Spec {
        slots: 4,
        started: 4,
        ..Spec::default()
    });
    let t0 = c.start_load();
    c.wait_serving(
        &["web1", "web2", "web3", "web4"],
        t0,
        Duration::from_secs(30),
    );
    // Failures before the first slots fill (503s) are not part of the scenario.
    let ready = now_us();
    c.start_web(4, true);
    c.start_web(5, true);
    // Both extra members are alive in the cluster, and wait: nobody is moved.
    wait_until(
        Duration::from_secs(30),
        "the agent to see all six members",
        || {
            let m = haserf(&c.status_socket(), &["members", "--format", "json"])?;
            ALL.iter()
                .all(|n| m.contains(&format!("\"{n}\"")))
                .then_some(())
                .ok_or(m)
        },
    );
    let slots = c.slots().expect("slots");
    assert_eq!(
        slots.keys().collect::<Vec<_>>(),
        ["web1", "web2", "web3", "web4"],
        "slots were reshuffled"
    );
    c.leave_web(0);
    let t1 = now_us();
    wait_until(
        Duration::from_secs(30),
        "a waiting member to take the freed slot",
        || {
            let s = c.slots()?;
            let waiting = s.contains_key("web5") || s.contains_key("web6");
            (s.len() == 4 && !s.contains_key("web1") && waiting)
                .then_some(())
                .ok_or(format!("{s:?}"))
        },
    );
    let t2 = now_us();
    wait_until(
        Duration::from_secs(30),
        "the new slot holder to serve",
        || {
            let s = c.slots()?;
            let holder = ["web5", "web6"]
                .into_iter()
                .find(|n| s.contains_key(*n))
                .ok_or("none")?;
            c.load()
                .served_since(t1.min(t2))
                .contains_key(holder)
                .then_some(())
                .ok_or(format!("{holder} not served yet"))
        },
    );
    c.load.as_mut().unwrap().stop();
    c.assert_no_failed_requests_since(ready);
    c.assert_haproxy_pid_unchanged();
}
