//! `haserf agent --event-handler` against stock `serf agent -event-handler`, side by side:
//! the same recording script runs under both, as observers of the same cluster, and for
//! each event type (member-join, member-update, user, query, member-leave, member-failed,
//! member-reap)
//! the stdin it read must be byte-identical and its `SERF_*` environment the same (the
//! observer's own name aside). Then a query handler's stdout is the response `serf query`
//! shows, a slow handler delays neither gossip nor another handler, and a failing one is
//! counted in `/metrics`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::handler_record::{about, recorder, runs, Run};
use support::{wait_until, HaserfAgent, HaserfOptions, SerfOptions, SerfPeer};

#[track_caller]
fn same_on_both(dir: &Path, serf: &str, haserf: &str, event: &str, needle: &str) -> Run {
    let (a, b) = wait_until(
        Duration::from_secs(20),
        &format!("{event} ({needle}) handled on {serf} and {haserf}"),
        || {
            let a = about(dir, serf, event, needle);
            let b = about(dir, haserf, event, needle);
            if a.is_empty() || b.is_empty() {
                Err(format!("serf: {a:?}\nhaserf: {b:?}"))
            } else {
                Ok((a, b))
            }
        },
    );
    assert_eq!(a.len(), 1, "serf ran once: {a:?}");
    assert_eq!(b.len(), 1, "haserf ran once, as serf: {b:?}");
    let (ea, sa, enva) = &a[0];
    let (_, sb, envb) = &b[0];
    // left: serf, right: haserf
    assert_eq!(
        String::from_utf8_lossy(sa),
        String::from_utf8_lossy(sb),
        "{event}: stdin differs"
    );
    assert_eq!(sa, sb, "{event}: stdin bytes differ");
    assert_eq!(enva, envb, "{event}: environment differs");
    (ea.clone(), sa.clone(), enva.clone())
}

/// For events whose coalescing may group different members on each side (reaps): the
/// line of the member named by `needle` and the environment are the same on both.
#[track_caller]
fn same_line_on_both(dir: &Path, serf: &str, haserf: &str, event: &str, needle: &str) -> String {
    let (a, b) = wait_until(
        Duration::from_secs(40),
        &format!("{event} ({needle}) handled on {serf} and {haserf}"),
        || {
            let a = about(dir, serf, event, needle);
            let b = about(dir, haserf, event, needle);
            if a.is_empty() || b.is_empty() {
                Err(format!("serf: {a:?}\nhaserf: {b:?}"))
            } else {
                Ok((a, b))
            }
        },
    );
    let line = |stdin: &[u8]| {
        String::from_utf8_lossy(stdin)
            .lines()
            .find(|l| l.contains(needle))
            .map(|l| format!("{l}\n"))
            .unwrap_or_default()
    };
    assert_eq!(
        line(&a[0].1),
        line(&b[0].1),
        "{event}: the member's line differs"
    );
    assert_eq!(a[0].2, b[0].2, "{event}: environment differs");
    line(&a[0].1)
}

#[test]
fn the_same_handler_sees_the_same_stdin_and_environment_under_serf_and_haserf() {
    let dir = tempfile::tempdir().unwrap();
    let script = recorder(dir.path());
    let spec = script.display().to_string();
    let serf_obs = SerfPeer::start(
        SerfOptions::new("obs-serf")
            .tag("role", "obs")
            .handler(&spec)
            .fast_reap("2s"),
    );
    let fast_reap = dir.path().join("fast-reap.json");
    std::fs::write(
        &fast_reap,
        r#"{"reconnect_timeout":"2s","tombstone_timeout":"2s"}"#,
    )
    .unwrap();
    let haserf_obs = HaserfAgent::start(
        HaserfOptions::member("obs-haserf")
            .join(serf_obs.bind_addr())
            .args(&[
                "--tag=role=obs",
                &format!("--event-handler={spec}"),
                &format!("--config={}", fast_reap.display()),
            ]),
    );
    serf_obs.wait_status("obs-haserf", "alive", Duration::from_secs(20));
    // start-up: like serf, haserf hands its scripts a member-join listing itself (and the
    // members it found; coalescing timing makes these first events differ, so they are only
    // checked for content)
    let first = wait_until(
        Duration::from_secs(20),
        "haserf's start-up member-join",
        || {
            let r = about(dir.path(), "obs-haserf", "member-join", "obs-haserf\t");
            let seen_serf =
                !about(dir.path(), "obs-haserf", "member-join", "obs-serf\t").is_empty();
            let serf_saw = !about(dir.path(), "obs-serf", "member-join", "obs-haserf\t").is_empty();
            match r.first() {
                Some(run) if seen_serf && serf_saw => Ok(run.clone()),
                _ => Err(format!(
                    "{:?} {seen_serf} {serf_saw}",
                    runs(dir.path(), "obs-haserf")
                )),
            }
        },
    );
    let me = wait_until(
        Duration::from_secs(20),
        "serf's start-up member-join",
        || {
            about(dir.path(), "obs-serf", "member-join", "obs-serf\t")
                .first()
                .cloned()
                .ok_or("none")
        },
    );
    assert_eq!(first.2, me.2, "start-up member-join: environment differs");
    assert_eq!(me.2.get("SERF_SELF_ROLE").map(String::as_str), Some("obs"));
    assert_eq!(me.2.get("SERF_TAG_ROLE").map(String::as_str), Some("obs"));
    eprintln!(
        "haserf start-up join: {:?}",
        String::from_utf8_lossy(&first.1)
    );

    // member-join of a new node
    let mut subj = SerfPeer::start(
        SerfOptions::new("subj")
            .tag("role", "web")
            .join(serf_obs.bind_addr()),
    );
    let (_, stdin, _) = same_on_both(
        dir.path(),
        "obs-serf",
        "obs-haserf",
        "member-join",
        "subj\t",
    );
    assert_eq!(
        String::from_utf8(stdin).unwrap(),
        format!("subj\t{}\tweb\trole=web\n", subj.ip())
    );
    // member-update: a tag changed (one tag: serf writes several in Go's random map order)
    subj.tags_set(&[("role", "api")], &[]);
    same_on_both(
        dir.path(),
        "obs-serf",
        "obs-haserf",
        "member-update",
        "role=api",
    );
    // user event with a payload
    subj.event("deploy", "v2.1");
    let (_, stdin, env) = same_on_both(dir.path(), "obs-serf", "obs-haserf", "user", "v2.1");
    assert_eq!(stdin, b"v2.1\n");
    assert_eq!(
        env.get("SERF_USER_EVENT").map(String::as_str),
        Some("deploy")
    );
    assert!(env.contains_key("SERF_USER_LTIME"));
    // query: same stdin and environment, and the handler's stdout is the answer serf shows
    let answer = subj.query("greet", "hi there", Duration::from_secs(3), &[]);
    let (_, stdin, env) = same_on_both(dir.path(), "obs-serf", "obs-haserf", "query", "hi there");
    assert_eq!(stdin, b"hi there\n");
    assert_eq!(
        env.get("SERF_QUERY_NAME").map(String::as_str),
        Some("greet")
    );
    assert_eq!(
        answer.responses.get("obs-haserf").map(String::as_str),
        Some("hello from obs-haserf: hi there"),
        "{answer:?}"
    );
    assert_eq!(
        answer.responses.get("obs-serf").map(String::as_str),
        Some("hello from obs-serf: hi there"),
        "{answer:?}"
    );
    // member-leave
    subj.leave();
    same_on_both(
        dir.path(),
        "obs-serf",
        "obs-haserf",
        "member-leave",
        "subj\t",
    );
    // member-failed
    let mut victim = SerfPeer::start(SerfOptions::new("victim").join(serf_obs.bind_addr()));
    same_on_both(
        dir.path(),
        "obs-serf",
        "obs-haserf",
        "member-join",
        "victim\t",
    );
    victim.kill();
    let (_, stdin, _) = same_on_both(
        dir.path(),
        "obs-serf",
        "obs-haserf",
        "member-failed",
        "victim\t",
    );
    assert_eq!(
        String::from_utf8(stdin).unwrap(),
        format!("victim\t{}\t\t\n", victim.ip()),
        "no tags: empty role and tag fields"
    );
    // member-reap: failed longer than reconnect_timeout (both reapers run every 15 s)
    let line = same_line_on_both(
        dir.path(),
        "obs-serf",
        "obs-haserf",
        "member-reap",
        "victim\t",
    );
    assert_eq!(line, format!("victim\t{}\t\t\n", victim.ip()));
    drop(haserf_obs);
}

fn metric(agent: &HaserfAgent, sample: &str) -> u64 {
    agent
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

#[test]
fn a_slow_handler_delays_neither_gossip_nor_other_handlers_and_failures_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let record = recorder(dir.path()).display().to_string();
    let seed = SerfPeer::start(SerfOptions::new("seed"));
    let agent = HaserfAgent::start(HaserfOptions::member("h1").join(seed.bind_addr()).args(&[
        "--event-handler=member-join=sleep 10",
        &format!("--event-handler=member-join,user={record}"),
        "--event-handler=user:boom=echo failing-because-of-boom >&2; exit 3",
        "--event-handler=query:big=head -c 2000 /dev/zero | tr '\\0' x",
    ]));
    seed.wait_status("h1", "alive", Duration::from_secs(20));
    wait_until(
        Duration::from_secs(10),
        "h1's start-up join recorded",
        || {
            let r = about(dir.path(), "h1", "member-join", "h1\t");
            if r.is_empty() {
                Err("none")
            } else {
                Ok(())
            }
        },
    );
    // the slow script now sleeps 10 s on that first join: under serf every later event
    // would wait for it
    let t0 = std::time::Instant::now();
    let _n2 = SerfPeer::start(SerfOptions::new("n2").join(seed.bind_addr()));
    wait_until(Duration::from_secs(8), "h1 sees n2 alive (gossip)", || {
        let s = agent.member_statuses();
        if s.get("n2").map(String::as_str) == Some("alive") {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    });
    wait_until(
        Duration::from_secs(8),
        "n2's join recorded by the fast script",
        || {
            let r = about(dir.path(), "h1", "member-join", "n2\t");
            if r.is_empty() {
                Err("none")
            } else {
                Ok(())
            }
        },
    );
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // a failing script: counted, logged with its stderr; the others still run
    seed.event("boom", "x");
    wait_until(
        Duration::from_secs(10),
        "the failure counted",
        || match metric(&agent, "haserf_event_handler_runs_total{result=\"failed\"}") {
            1 => Ok(()),
            n => Err(n),
        },
    );
    assert!(
        agent.log().contains("failing-because-of-boom"),
        "{}",
        agent.log()
    );
    wait_until(
        Duration::from_secs(10),
        "the user event recorded too",
        || {
            let r = about(dir.path(), "h1", "user", "x");
            if r.is_empty() {
                Err("none")
            } else {
                Ok(())
            }
        },
    );
    // a query answer over query_response_size_limit (1024, as serf) is not sent, and counted
    let answer = seed.query("big", "", Duration::from_secs(2), &[]);
    assert!(!answer.responses.contains_key("h1"), "{answer:?}");
    wait_until(
        Duration::from_secs(5),
        "the refused response counted",
        || match metric(&agent, "haserf_event_handler_responses_refused_total") {
            1 => Ok(()),
            n => Err(n),
        },
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "all of it while the slow script sleeps"
    );
}
