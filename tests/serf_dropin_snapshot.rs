//! Serf's snapshot (`--snapshot`, `snapshot_path`) against real serf peers: a haserf agent
//! killed with -9 and started again with its snapshot and no `--join` is back in the
//! cluster within the push/pull interval and hands no past user event to its handlers; the
//! same from a snapshot written by stock `serf agent` (a node moving from serf to haserf
//! keeps its file); after a graceful leave it stays out unless `--rejoin`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::handler_record::{about, recorder};
use support::{try_wait_until, wait_until, HaserfAgent, HaserfOptions, SerfOptions, SerfPeer};

/// The `local` profile's push/pull interval (the harness runs every agent with it).
const PUSH_PULL: Duration = Duration::from_secs(15);

#[track_caller]
fn wait_recorded(dir: &Path, node: &str, payload: &str) {
    wait_until(
        Duration::from_secs(10),
        &format!("{node} handles user event {payload}"),
        || {
            if about(dir, node, "user", payload).is_empty() {
                Err(String::from("not yet"))
            } else {
                Ok(())
            }
        },
    );
}

#[track_caller]
fn wait_snapshot_has(path: &Path, needle: &str) {
    wait_until(
        Duration::from_secs(10),
        &format!("snapshot has {needle:?}"),
        || {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                Ok(())
            } else {
                Err(text)
            }
        },
    );
}

/// Starts haserf `name` on `ip` with the snapshot and the recording handler, no `--join`,
/// and checks that it is back (both ways) within the push/pull interval and that the past
/// user event `old` is not handled again while a new one is.
#[track_caller]
fn restart_without_join_rejoins(
    name: &str,
    ip: std::net::Ipv4Addr,
    snapshot: &Path,
    dir: &Path,
    seed: &SerfPeer,
    old: &str,
    new: &str,
) -> HaserfAgent {
    let record = recorder(dir).display().to_string();
    let t0 = Instant::now();
    let mut opts = HaserfOptions::member(name).args(&[
        &format!("--snapshot={}", snapshot.display()),
        &format!("--event-handler=user={record}"),
    ]);
    opts.ip = Some(ip);
    let agent = HaserfAgent::start(opts);
    wait_until(PUSH_PULL, &format!("{name} sees the cluster again"), || {
        let s = agent.member_statuses();
        if s.get(seed.name()).map(String::as_str) == Some("alive") {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    seed.wait_status(name, "alive", PUSH_PULL.saturating_sub(t0.elapsed()));
    assert!(t0.elapsed() < PUSH_PULL, "back after {:?}", t0.elapsed());
    seed.event("after", new);
    wait_recorded(dir, name, new);
    let replays = about(dir, name, "user", old);
    assert!(
        replays.len() <= 1,
        "{old} handled again after the restart: {replays:?}"
    );
    agent
}

#[test]
fn a_killed_agent_restarted_with_its_snapshot_and_no_join_is_back_and_replays_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("h1.snapshot");
    let record = recorder(dir.path()).display().to_string();
    let seed = SerfPeer::start(SerfOptions::new("seed"));
    let _b = SerfPeer::start(SerfOptions::new("b").join(seed.bind_addr()));
    let mut h1 = HaserfAgent::start(HaserfOptions::member("h1").join(seed.bind_addr()).args(&[
        &format!("--snapshot={}", snapshot.display()),
        &format!("--event-handler=user={record}"),
    ]));
    let ip = match h1.bind_addr().ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("{other}"),
    };
    seed.wait_status("h1", "alive", Duration::from_secs(20));
    seed.event("before", "old-payload");
    wait_recorded(dir.path(), "h1", "old-payload");
    wait_snapshot_has(&snapshot, "event-clock: ");
    wait_snapshot_has(&snapshot, "alive: b ");
    h1.kill();
    seed.wait_status("h1", "failed", Duration::from_secs(20));
    let _h1 = restart_without_join_rejoins(
        "h1",
        ip,
        &snapshot,
        dir.path(),
        &seed,
        "old-payload",
        "new-payload",
    );
    assert_eq!(about(dir.path(), "h1", "user", "old-payload").len(), 1);
}

#[test]
fn a_snapshot_written_by_serf_agent_brings_haserf_back_into_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("mig.snapshot");
    let seed = SerfPeer::start(SerfOptions::new("seed"));
    let mut opts = SerfOptions::new("mig").join(seed.bind_addr());
    opts.extra_args
        .push(format!("-snapshot={}", snapshot.display()));
    let mut mig = SerfPeer::start(opts);
    seed.wait_status("mig", "alive", Duration::from_secs(20));
    seed.event("before", "serf-era");
    // serf buffers its snapshot and flushes only when a later line comes 500 ms after the
    // last flush: keep events coming until the file has the past on disk
    let mut n = 0;
    wait_until(Duration::from_secs(20), "serf's snapshot on disk", || {
        let text = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if text.contains("alive: seed ") && text.contains("event-clock: ") {
            return Ok(());
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(600));
        seed.event("before", &format!("serf-era-{n}"));
        Err(text)
    });
    let ip = mig.ip();
    mig.kill();
    let on_disk: u64 = std::fs::read_to_string(&snapshot)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("event-clock: ")?.parse().ok())
        .max()
        .unwrap();
    seed.wait_status("mig", "failed", Duration::from_secs(20));
    let _h = restart_without_join_rejoins(
        "mig",
        ip,
        &snapshot,
        dir.path(),
        &seed,
        "serf-era",
        "new-from-haserf",
    );
    assert!(
        about(dir.path(), "mig", "user", "serf-era\n").is_empty(),
        "serf's past event handed to haserf's handlers (snapshot at {on_disk}): {:?}\n{}",
        about(dir.path(), "mig", "user", "serf-era"),
        std::fs::read_to_string(&snapshot).unwrap()
    );
    // events serf had not flushed to disk when killed may come again (serf itself replays
    // them too); none at or before the snapshot's event clock
    for (_, stdin, env) in about(dir.path(), "mig", "user", "serf-era") {
        let ltime: u64 = env["SERF_USER_LTIME"].parse().unwrap();
        assert!(
            ltime > on_disk,
            "event at {ltime} replayed, snapshot at {on_disk}: {:?}",
            String::from_utf8_lossy(&stdin)
        );
    }
}

#[test]
fn after_a_graceful_leave_the_snapshot_is_not_rejoined_unless_rejoin_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("h2.snapshot");
    let seed = SerfPeer::start(SerfOptions::new("seed"));
    let snap = format!("--snapshot={}", snapshot.display());
    let mut h2 = HaserfAgent::start(
        HaserfOptions::member("h2")
            .join(seed.bind_addr())
            .args(&[&snap]),
    );
    seed.wait_status("h2", "alive", Duration::from_secs(20));
    wait_snapshot_has(&snapshot, "alive: seed ");
    h2.signal("TERM");
    assert!(h2.wait_exit(Duration::from_secs(10)).is_some());
    seed.wait_status("h2", "left", Duration::from_secs(10));
    assert!(std::fs::read_to_string(&snapshot)
        .unwrap()
        .ends_with("leave\n"));
    let ip = match h2.bind_addr().ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("{other}"),
    };
    drop(h2);
    // without --rejoin: the leave made it forget the cluster (serf's default)
    let mut opts = HaserfOptions::member("h2").args(&[&snap]);
    opts.ip = Some(ip);
    let alone = HaserfAgent::start(opts.clone());
    let r = try_wait_until(Duration::from_secs(3), "h2 rejoining by itself", || {
        if alone.member_statuses().contains_key("seed") {
            Ok(())
        } else {
            Err("alone")
        }
    });
    assert!(
        r.is_err(),
        "h2 rejoined although it had left: {:?}",
        alone.member_statuses()
    );
    drop(alone);
    // with --rejoin (rejoin_after_leave): back in
    let opts = opts.args(&["--rejoin"]);
    let back = HaserfAgent::start(opts);
    wait_until(PUSH_PULL, "h2 rejoins with --rejoin", || {
        let s = back.member_statuses();
        if s.get("seed").map(String::as_str) == Some("alive") {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
}
