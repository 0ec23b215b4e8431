//! Admission: when a member placed in a slot is put in rotation (`--admit`).
//!
//! - [`Admit::Check`] (default): the slot is filled in `drain` and goes `ready` once a real
//!   health check passed — HAProxy's own first check, or the agent's probe of the member's
//!   address with the check the backend declares (`--admit-probe`), whichever comes first.
//!   HAProxy 2.6 keeps its check schedule when a slot leaves maintenance (the first check
//!   comes up to one `inter` later), so the probe is what makes a join fast: one connect
//!   (and one HTTP request) from the agent, milliseconds on a LAN. A member whose app does
//!   not answer fails both and is never put in rotation.
//! - [`Admit::Gossip`]: the member's alive state is trusted and the slot goes `ready` at
//!   once; HAProxy's active checks and passive health (`observe layer4`, `error-limit`,
//!   `on-error mark-down`, with `option redispatch` and `retries` to re-send the requests
//!   that met a dead member) take it out when the app is not there.
//!
//! [`probe`] is the agent's check; the reconciler runs it (one task per address, bounded by
//! [`PROBE_TIMEOUT`]) and feeds the result back to its loop.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest one probe may take (as HAProxy's `timeout check` of the example config).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A failed probe of an address is retried after this long.
pub const PROBE_RETRY: Duration = Duration::from_millis(250);
/// Most bytes of a probe's HTTP answer that are read (the status line is all it needs).
const MAX_ANSWER: usize = 4096;

/// How a backend's new members are put in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admit {
    /// After a passed health check (HAProxy's or the agent's probe).
    #[default]
    Check,
    /// At once, on the member's alive state; checks and passive health take it out.
    Gossip,
}

impl Admit {
    /// `check` or `gossip`.
    pub fn parse(s: &str) -> Result<Admit, String> {
        match s {
            "check" => Ok(Admit::Check),
            "gossip" => Ok(Admit::Gossip),
            other => Err(format!("{other:?}: expected check or gossip")),
        }
    }
}

impl fmt::Display for Admit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Admit::Check => "check",
            Admit::Gossip => "gossip",
        })
    }
}

/// The agent's own check of a member, mirroring the backend's `check` line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Probe {
    /// A TCP connect (HAProxy's plain `check`).
    #[default]
    Tcp,
    /// `GET PATH` answered with a 2xx or 3xx status (`option httpchk GET PATH` with
    /// HAProxy's default `http-check expect`).
    Http {
        /// Request path, starting with `/`.
        path: String,
    },
    /// No probe: wait for HAProxy's own first check (a check the agent cannot mirror, e.g.
    /// `http-check expect string`, or TLS).
    Haproxy,
}

impl Probe {
    /// `tcp`, `http:/PATH` or `haproxy`.
    pub fn parse(s: &str) -> Result<Probe, String> {
        match s.split_once(':') {
            None if s == "tcp" => Ok(Probe::Tcp),
            None if s == "haproxy" => Ok(Probe::Haproxy),
            Some(("http", path))
                if path.starts_with('/') && !path.bytes().any(|b| b.is_ascii_whitespace()) =>
            {
                Ok(Probe::Http {
                    path: path.to_string(),
                })
            }
            _ => Err(format!("{s:?}: expected tcp, http:/PATH or haproxy")),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp => f.write_str("tcp"),
            Probe::Http { path } => write!(f, "http:{path}"),
            Probe::Haproxy => f.write_str("haproxy"),
        }
    }
}

/// A backend's admission: the mode, and the probe `check` mode runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admission {
    /// Check or gossip.
    pub mode: Admit,
    /// The agent's probe in `check` mode.
    pub probe: Probe,
}

/// Parses repeated `[BACKEND=]VALUE` settings with `parse`: a value without a backend is the
/// default of every backend, a later setting wins. Returns (default, per backend).
pub fn parse_per_backend<T>(
    values: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(Option<T>, BTreeMap<String, T>), String> {
    let mut default = None;
    let mut per = BTreeMap::new();
    for v in values {
        match v.split_once('=') {
            Some((backend, value)) if !backend.is_empty() && !backend.contains(':') => {
                per.insert(backend.to_string(), parse(value)?);
            }
            _ => default = Some(parse(v)?),
        }
    }
    Ok((default, per))
}

/// Runs `probe` against `addr` within [`PROBE_TIMEOUT`]: `Ok` when the member answers as
/// the check expects, else what went wrong.
pub async fn probe(addr: SocketAddr, probe: &Probe) -> Result<(), String> {
    tokio::time::timeout(PROBE_TIMEOUT, run_probe(addr, probe))
        .await
        .map_err(|_| format!("no answer within {PROBE_TIMEOUT:?}"))?
}

async fn run_probe(addr: SocketAddr, probe: &Probe) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let path = match probe {
        Probe::Http { path } => path,
        Probe::Tcp => return Ok(()),
        Probe::Haproxy => return Err("no agent probe (--admit-probe haproxy)".into()),
    };
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: haserf-admission\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < MAX_ANSWER {
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim_end()))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_probes_parse_per_backend_with_a_default() {
        let v: Vec<String> = ["gossip", "api=check"].map(String::from).into();
        let (d, per) = parse_per_backend(&v, Admit::parse).unwrap();
        assert_eq!(d, Some(Admit::Gossip));
        assert_eq!(per["api"], Admit::Check);
        let v: Vec<String> = ["web=http:/healthz", "tcp"].map(String::from).into();
        let (d, per) = parse_per_backend(&v, Probe::parse).unwrap();
        assert_eq!(d, Some(Probe::Tcp));
        assert_eq!(Probe::parse("haproxy"), Ok(Probe::Haproxy));
        assert_eq!(per["web"].to_string(), "http:/healthz");
        assert!(Admit::parse("later").is_err());
        assert!(Probe::parse("http:healthz").is_err());
        assert!(Probe::parse("http:/a b").is_err());
    }

    async fn serve_once(answer: &'static str) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer.as_bytes()).await;
        });
        addr
    }

    #[tokio::test]
    async fn an_http_probe_passes_on_2xx_and_3xx_only() {
        let http = |p: &str| Probe::Http { path: p.into() };
        let a = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(probe(a, &http("/healthz")).await, Ok(()));
        let a = serve_once("HTTP/1.0 302 Found\r\n\r\n").await;
        assert_eq!(probe(a, &http("/")).await, Ok(()));
        let a = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(probe(a, &http("/")).await.unwrap_err().contains("503"));
        let a = serve_once("SSH-2.0-OpenSSH\r\n").await;
        assert!(probe(a, &http("/")).await.is_err());
    }

    #[tokio::test]
    async fn a_probe_of_an_address_nobody_listens_on_fails() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(probe(addr, &Probe::Tcp).await.is_err());
    }
}
