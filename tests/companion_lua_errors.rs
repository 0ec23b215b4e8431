//! Every way the Lua status page can fail to read the agent answers the documented 503
//! with the reason (never HAProxy's 500, never a Lua runtime ALERT per request), and
//! HAProxy's log names each new failure reason once and the recovery once. The agent is
//! replaced by a scripted unix socket that answers whatever the test says, framed as the
//! current agent frames replies to `"framed":true` (`#<length>` line, then the reply line),
//! or unframed as an agent older than the script.

mod companion_fixture;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use companion_fixture::*;
use serde_json::Value;
use support::*;

/// What the scripted socket does with each request line.
#[derive(Clone, Debug)]
enum Script {
    /// Answers with this reply line as the current agent does: `#<length>` header line,
    /// then the line (a newline is added).
    Line(String),
    /// Answers with this line and no frame, as an agent older than framed replies.
    Unframed(String),
    /// Writes exactly these bytes (broken frames), then closes the connection.
    Raw(Vec<u8>),
    /// Closes the connection without answering.
    Close,
}

/// A unix socket answering every request line according to the current [`Script`].
struct ScriptedAgent {
    path: PathBuf,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedAgent {
    fn start(path: &Path, script: Script) -> ScriptedAgent {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let script = Arc::new(Mutex::new(script));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (script, stop) = (script.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((conn, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let script = script.clone();
                    std::thread::spawn(move || serve(conn, &script));
                }
            })
        };
        ScriptedAgent {
            path: path.to_owned(),
            script,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, s: Script) {
        *self.script.lock().unwrap() = s;
    }
}

/// One connection: each request line gets what the script says. A framed reply goes out as
/// the agent sends it: `#<length>` line, then the reply in pieces of the request's
/// `"chunk"` bytes, each piece but the first after an empty line from the reader.
fn serve(conn: UnixStream, script: &Mutex<Script>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if !matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            return;
        }
        if line.trim().is_empty() {
            continue;
        }
        let chunk = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["chunk"].as_u64())
            .map_or(usize::MAX, |c| c as usize);
        let s = script.lock().unwrap().clone();
        let (head, body) = match s {
            Script::Line(l) => (format!("#{}\n", l.len()), format!("{l}\n")),
            Script::Unframed(l) => (String::new(), format!("{l}\n")),
            Script::Raw(b) => {
                let _ = w.write_all(&b);
                return;
            }
            Script::Close => return,
        };
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        for (i, piece) in body.as_bytes().chunks(chunk).enumerate() {
            if i > 0 {
                let mut ack = String::new();
                if !matches!(r.read_line(&mut ack), Ok(n) if n > 0) || !ack.trim().is_empty() {
                    return;
                }
            }
            if w.write_all(piece).is_err() {
                return;
            }
        }
    }
}

impl Drop for ScriptedAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lua_haproxy(socket_setting: &str) -> Haproxy {
    let ip = alloc_ip();
    let fe = std::net::SocketAddr::from((ip, free_port_on(ip)));
    let origin = HttpBackend::start("origin");
    let cfg = HaproxyConfig::new(&format!(
        "frontend fe
    bind {fe}
    http-request use-service lua.haserf-status if {{ path /haserf }}
    http-response set-header X-Served-By %[lua.haserf_node]
    default_backend web

backend web
    server web1 {origin}
",
        origin = origin.addr()
    ))
    .global(&format!(
        "    setenv HASERF_STATUS_SOCKET {socket_setting}\n    setenv HASERF_TIMEOUT_MS 500\n    setenv HASERF_REFRESH_MS 200\n    lua-load {}",
        repo_file("lua/haserf.lua")
    ));
    let h = Haproxy::start(cfg);
    std::mem::forget(origin); // answers the odd request through `web`; killed with the test process
    h
}

/// Asks the page (JSON and HTML) and checks both are the documented 503 naming `want`,
/// each within a second (no case here waits for a timeout); returns the JSON detail.
#[track_caller]
fn assert_503(h: &Haproxy, want: &str) -> String {
    let t = Instant::now();
    let r = get_with(h.frontend_addr(), "/haserf?format=json", &[]);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "the 503 naming {want:?} took {:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    assert_eq!(v["error"], "haserf agent unavailable");
    let detail = v["detail"].as_str().unwrap().to_string();
    assert!(detail.contains(want), "want {want:?} in {detail:?}");
    let html = get_with(h.frontend_addr(), "/haserf", &[]);
    assert_eq!(html.status, 503);
    assert!(
        html.body.contains("haserf agent unavailable"),
        "{}",
        html.body
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "two pages took {:?}",
        t.elapsed()
    );
    detail
}

#[track_caller]
fn assert_no_lua_alerts(h: &Haproxy) {
    let log = h.log();
    assert!(
        !log.contains("runtime error") && !log.contains("ALERT"),
        "HAProxy log:\n{log}"
    );
}

#[test]
fn every_bad_or_missing_agent_reply_answers_503_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("haserf.sock");
    let h = lua_haproxy(&sock.display().to_string());
    assert_503(&h, "cannot connect to the haserf agent");

    let agent = ScriptedAgent::start(&sock, Script::Close);
    let big = format!(
        "{{\"members\":[{}]}}",
        vec!["{\"name\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}"; 600].join(",")
    );
    let cases: Vec<(Script, &str)> = vec![
        (Script::Close, "no reply from the haserf agent"),
        (Script::Line("hello there".into()), "unreadable reply"),
        (Script::Line("[1,2,3]".into()), "not a JSON object"),
        (Script::Line("\"a string\"".into()), "not a JSON object"),
        (
            Script::Line("{\"error\":\"boom\"}".into()),
            "with an error: boom",
        ),
        (
            Script::Line("{\"members\":5}".into()),
            "has no members list",
        ),
        (
            Script::Line("{\"members\":[],\"next\":0}".into()),
            "names no later page",
        ),
        (
            Script::Line("{\"members\":[],\"next\":\"x\"}".into()),
            "names no later page",
        ),
        (Script::Line("{\"members\":[1".into()), "unreadable reply"),
        // broken frames: a header that is no length, one beyond the script's limit, a body
        // cut short, a body longer than its header says
        (Script::Raw(b"#12abc\n{}\n".to_vec()), "bad frame header"),
        (Script::Raw(b"#\n{}\n".to_vec()), "bad frame header"),
        (
            Script::Raw(b"#99999999999\n{}\n".to_vec()),
            "more than the 16777216 this script reads",
        ),
        (
            Script::Raw(b"#500\n{\"members\":[]}\n".to_vec()),
            "cut short after",
        ),
        (
            Script::Raw(b"#2\n{\"members\":[]}\n".to_vec()),
            "longer than its frame",
        ),
        // a framed reply far beyond tune.bufsize is read whole: the members pass, and the
        // same line as the slots reply lacks its list
        (
            Script::Line(big.clone()),
            "reply to slots has no slots list",
        ),
        // an agent older than framed replies: refused at its first byte, whatever the size
        (Script::Unframed(big), "older than this script"),
        (Script::Unframed("{\"members\":[]}".into()), "tune.bufsize"),
    ];
    for (script, want) in cases {
        agent.set(script.clone());
        let detail = assert_503(&h, want);
        let shown: String = format!("{script:?}").chars().take(60).collect();
        eprintln!("{shown} -> {detail}");
    }
    // the fetch keeps answering (empty: its table never filled) and traffic flows
    let r = http_get(h.frontend_addr(), "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by"), Some(""));
    assert_no_lua_alerts(&h);
}

#[test]
fn a_status_socket_setting_without_a_port_answers_503_not_a_lua_alert() {
    // core.tcp():connect() raises on "127.0.0.1" (no port) instead of returning an error
    let h = lua_haproxy("127.0.0.1");
    assert_503(&h, "port");
    let r = http_get(h.frontend_addr(), "/").unwrap();
    assert_eq!(r.status, 200);
    assert_no_lua_alerts(&h);
}

#[test]
fn the_log_names_each_new_failure_reason_once_and_the_recovery_once() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("haserf.sock");
    let h = lua_haproxy(&sock.display().to_string());
    let agent = ScriptedAgent::start(&sock, Script::Line("{\"error\":\"first\"}".into()));
    for _ in 0..3 {
        assert_503(&h, "first");
    }
    agent.set(Script::Line("{\"error\":\"second\"}".into()));
    for _ in 0..3 {
        assert_503(&h, "second");
    }
    agent.set(Script::Line(
        "{\"members\":[],\"slots\":[],\"free\":{}}".into(),
    ));
    wait_until(
        Duration::from_secs(5),
        "the page to recover",
        || match get_with(h.frontend_addr(), "/haserf?format=json", &[]).status {
            200 => Ok(()),
            other => Err(other),
        },
    );
    let log = h.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    // HAProxy prints each Lua log line twice in the foreground (stderr and the log target)
    let per_line = count("haserf: status page:").max(1) / 3;
    assert!(per_line >= 1, "log:\n{log}");
    assert_eq!(
        count("status page: the haserf agent answered members with an error: first"),
        per_line,
        "log:\n{log}"
    );
    assert_eq!(
        count("status page: the haserf agent answered members with an error: second"),
        per_line,
        "log:\n{log}"
    );
    assert_eq!(count("status page: the agent at"), per_line, "log:\n{log}");
    assert_no_lua_alerts(&h);
}
