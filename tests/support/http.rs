//! Small HTTP pieces for proving where traffic went: backends that answer with their own name,
//! a tiny client, and a steady request loop that counts successes and failures.
//!
//! Backends answer every path with `200` and
//! `{"hello":"world","host":NAME,"ip":ADDR}`; `/sleep/MS` waits MS milliseconds first (for
//! drain tests). Keep-alive is supported.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::addr::alloc_ip;

/// An HTTP backend on its own address; stops (closing every connection) on drop.
pub struct HttpBackend {
    name: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl HttpBackend {
    /// Starts backend `name` on a fresh `127.R.x.y` with a free port.
    #[track_caller]
    pub fn start(name: &str) -> HttpBackend {
        HttpBackend::start_on(name, SocketAddr::from((alloc_ip(), 0)))
    }

    /// Starts backend `name` on `addr` (port 0 = any free port).
    #[track_caller]
    pub fn start_on(name: &str, addr: SocketAddr) -> HttpBackend {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("backend {name}: bind {addr}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let body = format!(
            "{{\"hello\":\"world\",\"host\":\"{name}\",\"ip\":\"{}\"}}",
            addr.ip()
        );
        let accept = {
            let (stop, hits, conns) = (stop.clone(), hits.clone(), conns.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(c) = stream.try_clone() {
                        conns.lock().unwrap().push(c);
                    }
                    let (stop, hits, body) = (stop.clone(), hits.clone(), body.clone());
                    std::thread::spawn(move || serve_conn(stream, &body, &stop, &hits));
                }
            })
        };
        HttpBackend {
            name: name.to_string(),
            addr,
            stop,
            hits,
            conns,
            accept: Some(accept),
        }
    }

    /// The backend's name (the `host` field of its answers).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far (health checks included).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes every open connection.
    pub fn stop(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_conn(stream: TcpStream, body: &str, stop: &AtomicBool, hits: &AtomicU64) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = request_line.ends_with("HTTP/1.0\r\n");
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut discard = vec![0u8; content_length.min(1 << 20)];
        if reader.read_exact(&mut discard).is_err() {
            return;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        if let Some(ms) = path
            .strip_prefix("/sleep/")
            .and_then(|m| m.parse::<u64>().ok())
        {
            std::thread::sleep(Duration::from_millis(ms.min(60_000)));
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{}",
            body.len(),
            if close { "connection: close\r\n" } else { "" },
            body
        );
        if writer.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// A parsed HTTP response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header lines (name lower-cased, value).
    pub headers: Vec<(String, String)>,
    /// Body (after de-chunking).
    pub body: String,
}

impl HttpResponse {
    /// The `host` field of a harness backend's JSON answer, if any.
    pub fn backend_host(&self) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()?
            .get("host")?
            .as_str()
            .map(str::to_string)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a new connection (`Connection: close`), 5 s timeout.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    let mut c = HttpClient::new(addr);
    c.keep_alive = false;
    c.get(path)
}

/// A tiny HTTP/1.1 client; with `keep_alive` it reuses one connection and reconnects when the
/// server closes it.
pub struct HttpClient {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Reuse the connection between requests (default true).
    pub keep_alive: bool,
    /// Connect/read/write timeout (default 5 s).
    pub timeout: Duration,
}

impl HttpClient {
    /// A client for `addr`.
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient {
            addr,
            conn: None,
            keep_alive: true,
            timeout: Duration::from_secs(5),
        }
    }

    /// Sends `GET path` and reads the response.
    pub fn get(&mut self, path: &str) -> std::io::Result<HttpResponse> {
        // A reused connection may have been closed by the server: retry once on a fresh one.
        let reused = self.conn.is_some();
        match self.get_once(path) {
            Err(_) if reused => {
                self.conn = None;
                self.get_once(path)
            }
            r => r,
        }
    }

    fn get_once(&mut self, path: &str) -> std::io::Result<HttpResponse> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let r = self.exchange(path);
        if r.is_err() || !self.keep_alive {
            self.conn = None;
        }
        if let Ok(resp) = &r {
            if resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            {
                self.conn = None;
            }
        }
        r
    }

    fn exchange(&mut self, path: &str) -> std::io::Result<HttpResponse> {
        let conn = self.conn.as_mut().expect("connected");
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: haserf-test\r\n{}\r\n",
            self.addr,
            if self.keep_alive {
                ""
            } else {
                "connection: close\r\n"
            }
        );
        conn.get_mut().write_all(req.as_bytes())?;
        read_response(conn)
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<HttpResponse> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed before a response"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(bad("connection closed in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = get("content-length") {
        let n: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if status != 204 && status != 304 {
        r.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Bounds and pacing of a [`RequestLoop`].
#[derive(Clone, Debug)]
pub struct LoopLimits {
    /// Pause between requests.
    pub interval: Duration,
    /// Stop after this many requests.
    pub max_requests: u64,
    /// Stop after this long.
    pub max_duration: Duration,
    /// Reuse connections.
    pub keep_alive: bool,
}

impl Default for LoopLimits {
    fn default() -> LoopLimits {
        LoopLimits {
            interval: Duration::from_millis(20),
            max_requests: 100_000,
            max_duration: Duration::from_secs(120),
            keep_alive: false,
        }
    }
}

/// What a [`RequestLoop`] has seen.
#[derive(Clone, Debug, Default)]
pub struct LoopStats {
    /// Requests answered with 200.
    pub ok: u64,
    /// Requests that failed (error or non-200).
    pub failed: u64,
    /// 200 answers per backend name (`host` field).
    pub by_host: BTreeMap<String, u64>,
    /// The first failures (up to 20), as text with their time since the loop started.
    pub failures: Vec<String>,
}

impl LoopStats {
    /// Total requests sent.
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }
}

/// Sends `GET path` to an address at a steady pace on a background thread until stopped or
/// its limits are reached, counting successes and failures.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LoopStats>>,
    handle: Option<JoinHandle<()>>,
}

impl RequestLoop {
    /// Starts the loop.
    pub fn start(addr: SocketAddr, path: &str, limits: LoopLimits) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Mutex<LoopStats>> = Arc::default();
        let handle = {
            let (stop, stats, path) = (stop.clone(), stats.clone(), path.to_string());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut client = HttpClient::new(addr);
                client.keep_alive = limits.keep_alive;
                let mut n = 0;
                while !stop.load(Ordering::SeqCst)
                    && n < limits.max_requests
                    && start.elapsed() < limits.max_duration
                {
                    n += 1;
                    let r = client.get(&path);
                    let mut s = stats.lock().unwrap();
                    match r {
                        Ok(resp) if resp.status == 200 => {
                            s.ok += 1;
                            let host = resp.backend_host().unwrap_or_default();
                            *s.by_host.entry(host).or_default() += 1;
                        }
                        other => {
                            s.failed += 1;
                            if s.failures.len() < 20 {
                                let what = match other {
                                    Ok(resp) => {
                                        format!("status {} {:.120}", resp.status, resp.body)
                                    }
                                    Err(e) => e.to_string(),
                                };
                                s.failures
                                    .push(format!("{:.3}s: {what}", start.elapsed().as_secs_f64()));
                            }
                        }
                    }
                    drop(s);
                    std::thread::sleep(limits.interval);
                }
            })
        };
        RequestLoop {
            stop,
            stats,
            handle: Some(handle),
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LoopStats {
        self.stats.lock().unwrap().clone()
    }

    /// True once the loop has stopped (limits reached or stopped).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the loop and returns the final counts.
    pub fn stop(mut self) -> LoopStats {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.halt();
    }
}
