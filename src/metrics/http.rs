//! `--metrics-bind IP:PORT`: `GET /metrics` over HTTP/1.x, for Prometheus scrapes.
//!
//! A deliberately small server rather than a general HTTP stack: one route, no request
//! body, one request per connection (`Connection: close`), so nothing but the request head
//! is ever read. The head is parsed by `httparse` (hyper's parser) from a buffer capped at
//! [`HttpLimits::max_head`]; every connection has a first-byte deadline, a whole-head
//! deadline and a write deadline; connections are limited globally and per peer address,
//! and connections over a limit are closed at once. Each refusal is counted in
//! `haserf_metrics_http_refused_total{reason}`.
//!
//! [`respond`] is the sans-IO part (request head bytes → response bytes); [`serve`] moves
//! the bytes.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::{labels, names, Labels, MetricsRegistry, CONTENT_TYPE};

/// Bounds of the metrics listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections at once from one peer address.
    pub max_per_peer: usize,
    /// A connection that sends nothing for this long is closed.
    pub first_byte: Duration,
    /// The whole request head must arrive within this (from accept).
    pub head_deadline: Duration,
    /// Longest request head (request line and headers), bytes.
    pub max_head: usize,
    /// Longest time to write a response.
    pub write_deadline: Duration,
}

impl Default for HttpLimits {
    /// 32 connections, 4 per peer, 1 s to the first byte, 5 s for the head, 8 KiB head, 10 s
    /// to write (a scrape of a few KiB).
    fn default() -> Self {
        HttpLimits {
            max_connections: 32,
            max_per_peer: 4,
            first_byte: Duration::from_secs(1),
            head_deadline: Duration::from_secs(5),
            max_head: 8 * 1024,
            write_deadline: Duration::from_secs(10),
        }
    }
}

/// What a complete or broken request head gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `GET /metrics` (or `HEAD`): the exposition; `head_only` leaves the body out.
    Metrics {
        /// `HEAD` request.
        head_only: bool,
    },
    /// A fixed response: status code, reason, body.
    Fixed(u16, &'static str, &'static str),
}

/// Parses a request head. `Ok(None)`: incomplete, read more (unless the buffer is full);
/// `Err`: a response to send and close (malformed head).
pub fn respond(head: &[u8]) -> Result<Option<Answer>, Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Answer::Fixed(
            431,
            "Request Header Fields Too Large",
            "too many header fields\n",
        )),
        Err(_) => Err(Answer::Fixed(400, "Bad Request", "malformed request\n")),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            let head_only = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => {
                    return Ok(Some(Answer::Fixed(
                        405,
                        "Method Not Allowed",
                        "only GET and HEAD\n",
                    )))
                }
            };
            Ok(Some(match path {
                "/metrics" => Answer::Metrics { head_only },
                "/" => Answer::Fixed(200, "OK", "haserf: metrics are at /metrics\n"),
                _ => Answer::Fixed(404, "Not Found", "not found; metrics are at /metrics\n"),
            }))
        }
    }
}

/// The response bytes for an answer (`body` is the exposition for [`Answer::Metrics`]).
pub fn response_bytes(answer: &Answer, exposition: impl FnOnce() -> String) -> Vec<u8> {
    let (status, reason, content_type, body, head_only) = match answer {
        Answer::Metrics { head_only } => (200, "OK", CONTENT_TYPE, exposition(), *head_only),
        Answer::Fixed(code, reason, body) => (
            *code,
            *reason,
            "text/plain; charset=utf-8",
            body.to_string(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

type RefusedFamily = Family<Labels, Counter>;

struct Peers {
    limits: HttpLimits,
    open: Mutex<HashMap<IpAddr, usize>>,
    total: tokio::sync::Semaphore,
    refused: RefusedFamily,
}

impl Peers {
    fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&labels(&names::METRICS_HTTP_REFUSED, &[reason]))
            .inc();
    }

    /// A place for a connection from `ip`, or `None` (and counted) over a limit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerGuard> {
        let Ok(permit) = self.total.try_acquire() else {
            self.refuse("connection_limit");
            return None;
        };
        permit.forget();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.limits.max_per_peer {
            drop(open);
            self.total.add_permits(1);
            self.refuse("peer_limit");
            return None;
        }
        *n += 1;
        Some(PeerGuard {
            peers: self.clone(),
            ip,
        })
    }
}

struct PeerGuard {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.peers.total.add_permits(1);
    }
}

/// Binds `addr` (errors name the flag).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics-bind {addr}: {e}"))
}

/// Serves `registry` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: MetricsRegistry,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let refused = RefusedFamily::default();
    registry.register(&names::METRICS_HTTP_REFUSED, refused.clone());
    let peers = Arc::new(Peers {
        limits,
        open: Mutex::new(HashMap::new()),
        total: tokio::sync::Semaphore::new(limits.max_connections),
        refused,
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(guard) = peers.admit(peer.ip()) else {
            continue;
        };
        let registry = registry.clone();
        let peers = peers.clone();
        tokio::spawn(async move {
            if let Err(reason) = serve_connection(stream, &registry, &limits).await {
                peers.refuse(reason);
                tracing::debug!(%peer, reason, "metrics connection closed early");
            }
            drop(guard);
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    registry: &MetricsRegistry,
    limits: &HttpLimits,
) -> Result<(), &'static str> {
    let started = tokio::time::Instant::now();
    let mut buf = vec![0u8; limits.max_head];
    let mut len = 0;
    let answer = loop {
        let deadline = if len == 0 {
            started + limits.first_byte
        } else {
            started + limits.head_deadline
        };
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf[len..]))
            .await
            .map_err(|_| "timeout")?
            .map_err(|_| "io")?;
        if n == 0 {
            return Err("closed");
        }
        len += n;
        match respond(&buf[..len]) {
            Ok(Some(answer)) => break answer,
            Err(answer) => break answer,
            Ok(None) if len == buf.len() => {
                break Answer::Fixed(
                    431,
                    "Request Header Fields Too Large",
                    "request head too large\n",
                )
            }
            Ok(None) => {}
        }
    };
    let refused = match answer {
        Answer::Fixed(400, ..) => Some("bad_request"),
        Answer::Fixed(431, ..) => Some("too_large"),
        _ => None,
    };
    let bytes = response_bytes(&answer, || registry.encode());
    tokio::time::timeout(limits.write_deadline, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| "timeout")?
    .map_err(|_| "io")?;
    refused.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_metrics_with_or_without_a_query_string_is_the_exposition() {
        for head in [
            &b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(
                respond(head),
                Ok(Some(Answer::Metrics { head_only: false }))
            );
        }
        assert_eq!(
            respond(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ok(Some(Answer::Metrics { head_only: true }))
        );
    }

    #[test]
    fn an_incomplete_head_asks_for_more() {
        assert_eq!(respond(b"GET /metr"), Ok(None));
        assert_eq!(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn other_paths_methods_and_garbage_get_their_status() {
        let code = |head: &[u8]| match respond(head) {
            Ok(Some(Answer::Fixed(c, ..))) | Err(Answer::Fixed(c, ..)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(b"GET /secrets HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(code(b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(code(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), 400);
        assert_eq!(code(b"GET /metrics HTTP/1.1\r\nbad header\r\n\r\n"), 400);
        let many: String = (0..80).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            code(format!("GET /metrics HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
    }

    #[test]
    fn a_response_has_length_type_and_close_and_head_has_no_body() {
        let r = response_bytes(&Answer::Metrics { head_only: false }, || "# EOF\n".into());
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 6\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n# EOF\n"));
        let r = response_bytes(&Answer::Metrics { head_only: true }, || "# EOF\n".into());
        assert!(String::from_utf8(r).unwrap().ends_with("\r\n\r\n"));
        let r = response_bytes(
            &Answer::Fixed(405, "Method Not Allowed", "x\n"),
            String::new,
        );
        assert!(String::from_utf8(r)
            .unwrap()
            .contains("Allow: GET, HEAD\r\n"));
    }
}
