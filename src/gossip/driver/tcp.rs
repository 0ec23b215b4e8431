//! The driver's TCP side: the accept loop (at most 128 streams at once, each under the TCP
//! timeout), reading one stream message with a size cap, writing the core's reply, and dials.
//! Complete messages go to the driver task as [`Internal`] inputs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::gossip::wire::{decode_stream, Keyring, Message};

/// Largest stream accepted (memberlist's `maxPushStateBytes`).
const MAX_STREAM: usize = 20 * 1024 * 1024;

/// What the TCP tasks hand to the driver task.
pub(crate) enum Internal {
    Stream {
        from: SocketAddr,
        msg: Message,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    StreamError {
        kind: &'static str,
        text: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Dial {
        id: u64,
        result: Result<Option<Message>, (Option<&'static str>, String)>,
    },
}

/// TCP byte counters, kept outside the core (the stream tasks count).
#[derive(Default)]
pub(crate) struct TcpCounters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

/// The keyring the stream tasks decrypt with (the core replaces it after key queries).
pub(crate) type SharedKeyring = Arc<RwLock<Option<Keyring>>>;

/// Accepts streams until the driver stops (it aborts this task).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::UnboundedSender<Internal>,
    keyring: SharedKeyring,
    counters: Arc<TcpCounters>,
    timeout: Duration,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(128));
    loop {
        let (sock, from) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let tx = tx.clone();
        let keyring = keyring.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(timeout, serve_stream(sock, from, tx, keyring, counters))
                .await;
            drop(permit);
        });
    }
}

async fn read_message(
    sock: &mut TcpStream,
    keyring: &SharedKeyring,
    counters: &TcpCounters,
) -> Result<Message, (&'static str, String)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16384];
    loop {
        let n = sock
            .read(&mut chunk)
            .await
            .map_err(|e| ("stream_io", e.to_string()))?;
        if n == 0 {
            if buf.is_empty() {
                return Err(("stream_empty", "empty stream".into()));
            }
            // Last chance: the peer closed its side.
            let ring = keyring.read().ok().and_then(|k| k.clone());
            return match decode_stream(&buf, ring.as_ref()) {
                Ok(Some((m, _))) => Ok(m),
                Ok(None) => Err(("stream_truncated", "truncated stream".into())),
                Err(e) => Err((e.kind(), e.to_string())),
            };
        }
        counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_STREAM {
            return Err(("stream_too_large", "stream larger than 20 MiB".into()));
        }
        let ring = keyring.read().ok().and_then(|k| k.clone());
        match decode_stream(&buf, ring.as_ref()) {
            Ok(Some((m, _))) => return Ok(m),
            Ok(None) => continue,
            Err(e) => return Err((e.kind(), e.to_string())),
        }
    }
}

async fn serve_stream(
    mut sock: TcpStream,
    from: SocketAddr,
    tx: mpsc::UnboundedSender<Internal>,
    keyring: SharedKeyring,
    counters: Arc<TcpCounters>,
) {
    let (rtx, rrx) = oneshot::channel();
    match read_message(&mut sock, &keyring, &counters).await {
        Ok(msg) => {
            let _ = tx.send(Internal::Stream {
                from,
                msg,
                reply: rtx,
            });
        }
        Err((kind, text)) => {
            tracing::debug!(%from, error = %text, "bad stream");
            let _ = tx.send(Internal::StreamError {
                kind,
                text,
                reply: rtx,
            });
        }
    }
    if let Ok(Some(reply)) = rrx.await {
        counters
            .bytes_out
            .fetch_add(reply.len() as u64, Ordering::Relaxed);
        let _ = sock.write_all(&reply).await;
        let _ = sock.flush().await;
    }
    let _ = sock.shutdown().await;
}

/// Dials `to`, writes `data`, and reads one message back when `expect_reply`; the error
/// names a drop reason when the reply was malformed (not for plain IO failures).
pub(crate) async fn dial(
    to: SocketAddr,
    data: Vec<u8>,
    expect_reply: bool,
    timeout: Duration,
    keyring: &SharedKeyring,
    counters: &TcpCounters,
) -> Result<Option<Message>, (Option<&'static str>, String)> {
    let fut = async {
        let mut sock = TcpStream::connect(to)
            .await
            .map_err(|e| (None, format!("dial {to}: {e}")))?;
        sock.write_all(&data)
            .await
            .map_err(|e| (None, format!("write {to}: {e}")))?;
        counters
            .bytes_out
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if !expect_reply {
            let _ = sock.shutdown().await;
            return Ok(None);
        }
        read_message(&mut sock, keyring, counters)
            .await
            .map(Some)
            .map_err(|(kind, t)| {
                let kind = (!matches!(kind, "stream_io" | "stream_empty")).then_some(kind);
                (kind, format!("read {to}: {t}"))
            })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err((None, format!("{to}: timed out"))),
    }
}
