//! Steady load: the generator (runs on the client host) and the runner-side monitor that reads
//! its per-request lines live.
//!
//! The generator opens one connection per request at a fixed rate (open loop, at most
//! `max_inflight` requests in flight, each bounded by a timeout) and prints one line per
//! finished request: `start_us end_us code node`, wall-clock microseconds since the Unix epoch,
//! `code` 0 for a transport error or timeout, `node` the `X-Node` header or `-`. It stops on
//! end of stdin or after `max_secs`, waits for what is in flight, and prints `done`.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::topology::{Host, Lab, Proc};

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Settings of the generator.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// HAProxy frontend `IP:PORT`.
    pub target: String,
    /// Requests per second.
    pub rate: u32,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Upper bound on requests in flight.
    pub max_inflight: usize,
    /// Hard stop.
    pub max_secs: u64,
    /// Also stop at end of stdin (the bench runner closes it); SIGTERM/SIGINT always stop.
    pub stop_on_eof: bool,
}

/// Runs the generator (the `loadgen` subcommand).
pub fn generate(spec: LoadSpec) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        // Stop on SIGTERM / SIGINT, and on end of stdin when asked to.
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        if spec.stop_on_eof {
            let stop_tx = stop_tx.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
                    line.clear();
                }
                let _ = stop_tx.send(true);
            });
        }
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
            let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                let _ = stop_tx.send(true);
            });
        }
        let writer = tokio::task::spawn_blocking(move || {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            while let Some(line) = rx.blocking_recv() {
                if out.write_all(line.as_bytes()).is_err() || out.flush().is_err() {
                    break;
                }
            }
        });
        let sem = Arc::new(tokio::sync::Semaphore::new(spec.max_inflight));
        let period = Duration::from_secs_f64(1.0 / f64::from(spec.rate.max(1)));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let end = tokio::time::Instant::now() + Duration::from_secs(spec.max_secs);
        let target: Arc<str> = spec.target.clone().into();
        let timeout = Duration::from_millis(spec.timeout_ms);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop_rx.changed() => break,
                _ = tokio::time::sleep_until(end) => break,
            }
            while tasks.try_join_next().is_some() {}
            let permit = match sem.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    // Saturated: count it as a failure, as a user would see it.
                    let t = now_us();
                    let _ = tx.send(format!("{t} {t} 0 -\n"));
                    continue;
                }
            };
            let tx = tx.clone();
            let target = target.clone();
            tasks.spawn(async move {
                let start = now_us();
                let result = tokio::time::timeout(timeout, one_request(&target)).await;
                let end = now_us();
                let (code, node) = match result {
                    Ok(Ok((code, node))) => (code, node),
                    _ => (0, "-".to_string()),
                };
                let _ = tx.send(format!("{start} {end} {code} {node}\n"));
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        let _ = tx.send("done\n".to_string());
        drop(tx);
        let _ = writer.await;
        Ok(())
    })
}

async fn one_request(target: &str) -> std::io::Result<(u16, String)> {
    let mut sock = tokio::net::TcpStream::connect(target).await?;
    sock.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::with_capacity(512);
    sock.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    let node = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-node")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "-".to_string());
    Ok((code, node))
}

/// One finished request as the monitor saw it.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// When it was sent (µs since epoch).
    pub start: u64,
    /// When it finished.
    pub end: u64,
    /// HTTP status, 0 for a transport error.
    pub code: u16,
    /// Index into [`LoadStats::nodes`] of the node that answered, if any.
    pub node: Option<u32>,
}

impl Sample {
    /// Whether the user got a good answer.
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// What the monitor has seen so far.
#[derive(Default, Debug)]
pub struct LoadStats {
    /// Every finished request, in arrival order.
    pub samples: Vec<Sample>,
    /// Names of the nodes that answered, indexed by [`Sample::node`].
    pub nodes: Vec<String>,
    node_ids: HashMap<String, u32>,
    /// Whether the generator said `done`.
    pub done: bool,
}

/// Figures over a window of samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    /// Requests finished.
    pub total: usize,
    /// Requests that failed (transport error, timeout or non-2xx/3xx).
    pub failed: usize,
    /// Latency percentiles of all requests, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

impl LoadStats {
    /// End time of the first good answer from `node` to a request sent at or after `after_us`.
    pub fn first_after(&self, node: &str, after_us: u64) -> Option<u64> {
        let id = *self.node_ids.get(node)?;
        self.samples
            .iter()
            .filter(|s| s.node == Some(id) && s.start >= after_us && s.ok())
            .map(|s| s.end)
            .min()
    }

    /// Send time of the last request at or after `after_us` that `node` answered (any
    /// status): when the load balancer stopped giving it new requests.
    pub fn last_sent_to(&self, node: &str, after_us: u64) -> Option<u64> {
        let id = *self.node_ids.get(node)?;
        self.samples
            .iter()
            .filter(|s| s.node == Some(id) && s.start >= after_us)
            .map(|s| s.start)
            .max()
    }

    fn node_id(&mut self, node: &str) -> u32 {
        if let Some(id) = self.node_ids.get(node) {
            return *id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(node.to_string());
        self.node_ids.insert(node.to_string(), id);
        id
    }

    /// Figures over requests sent in `[from_us, to_us)`.
    pub fn window(&self, from_us: u64, to_us: u64) -> Window {
        let mut lat: Vec<u64> = Vec::new();
        let mut failed = 0;
        for s in self
            .samples
            .iter()
            .filter(|s| s.start >= from_us && s.start < to_us)
        {
            lat.push(s.end.saturating_sub(s.start));
            if !s.ok() {
                failed += 1;
            }
        }
        lat.sort_unstable();
        Window {
            total: lat.len(),
            failed,
            p50_ms: percentile(&lat, 50.0) as f64 / 1000.0,
            p99_ms: percentile(&lat, 99.0) as f64 / 1000.0,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The runner's handle on a generator running on the client host.
pub struct LoadMonitor {
    proc: Proc,
    stats: Arc<Mutex<LoadStats>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl LoadMonitor {
    /// Starts the generator on `client` (this same binary, `loadgen` subcommand).
    pub fn start(lab: &Lab, client: &Host, spec: &LoadSpec) -> Result<LoadMonitor, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let args: Vec<String> = vec![
            "loadgen".into(),
            "--target".into(),
            spec.target.clone(),
            "--rate".into(),
            spec.rate.to_string(),
            "--timeout-ms".into(),
            spec.timeout_ms.to_string(),
            "--max-inflight".into(),
            spec.max_inflight.to_string(),
            "--max-secs".into(),
            spec.max_secs.to_string(),
            "--stop-on-eof".into(),
        ];
        let mut proc =
            lab.spawn_with(client, "loadgen", &me.to_string_lossy(), &args, &[], true)?;
        let stdout = proc.child.stdout.take().ok_or("loadgen: no stdout pipe")?;
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let shared = stats.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
                if line == "done" {
                    st.done = true;
                    break;
                }
                let mut it = line.split_whitespace();
                let (Some(a), Some(b), Some(c), Some(node)) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    continue;
                };
                let (Ok(start), Ok(end), Ok(code)) = (a.parse(), b.parse(), c.parse()) else {
                    continue;
                };
                let node = (node != "-").then(|| st.node_id(node));
                st.samples.push(Sample {
                    start,
                    end,
                    code,
                    node,
                });
            }
        });
        Ok(LoadMonitor {
            proc,
            stats,
            reader: Some(reader),
        })
    }

    /// Reads the stats under a lock.
    pub fn with<T>(&self, f: impl FnOnce(&LoadStats) -> T) -> T {
        f(&self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the generator (end of stdin), waits for its in-flight requests, returns the stats.
    pub fn stop(mut self) -> LoadStats {
        drop(self.proc.child.stdin.take());
        let _ = self.proc.wait_exit(Duration::from_secs(15));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.stats.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
