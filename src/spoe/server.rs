//! The tokio driver: accept connections, move bytes between the socket and
//! [`super::conn::Connection`], enforce timeouts. No protocol logic lives here.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::conn::{Connection, Event, Phase};
use super::handler::ClusterHandler;
use super::{ClusterView, SpoeConfig, SpoeMetrics};

/// Binds `cfg.bind` and serves SPOP until `shutdown` completes.
pub async fn serve(
    cfg: SpoeConfig,
    view: Arc<dyn ClusterView>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = TcpListener::bind(cfg.bind).await?;
    serve_listener(listener, cfg, view, shutdown).await
}

/// Serves SPOP on an already bound listener until `shutdown` completes; then every open
/// connection is dropped.
pub async fn serve_listener(
    listener: TcpListener,
    cfg: SpoeConfig,
    view: Arc<dyn ClusterView>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cfg = Arc::new(cfg);
    let handler = Arc::new(ClusterHandler::new(view, cfg.var_scope));
    let open = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    tracing::info!(addr = %listener.local_addr()?, "SPOE agent listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: count, back off a little, keep serving.
                        SpoeMetrics::inc(&cfg.metrics.io_errors);
                        tracing::warn!(error = %e, "SPOE accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open.load(Ordering::Relaxed) >= cfg.max_connections {
                    SpoeMetrics::inc(&cfg.metrics.refused);
                    tracing::warn!(%peer, "SPOE connection refused: max_connections reached");
                    drop(stream);
                    continue;
                }
                SpoeMetrics::inc(&cfg.metrics.connections);
                open.fetch_add(1, Ordering::Relaxed);
                let (cfg, handler, open) = (cfg.clone(), handler.clone(), open.clone());
                tasks.spawn(async move {
                    if let Err(e) = connection(stream, &cfg, &handler).await {
                        SpoeMetrics::inc(&cfg.metrics.io_errors);
                        tracing::debug!(%peer, error = %e, "SPOE connection ended with an I/O error");
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
    tasks.shutdown().await;
    Ok(())
}

async fn connection(
    mut stream: TcpStream,
    cfg: &SpoeConfig,
    handler: &ClusterHandler,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = Connection::new(cfg.max_frame_size);
    let mut buf = BytesMut::with_capacity(4096);
    let hello_deadline = tokio::time::Instant::now() + cfg.hello_timeout;
    loop {
        let deadline = if conn.phase() == Phase::AwaitHello {
            hello_deadline
        } else {
            tokio::time::Instant::now() + cfg.idle_timeout
        };
        let n = match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                let out = conn.timed_out();
                count(cfg, &out.events);
                if !out.bytes.is_empty() {
                    let _ = stream.write_all(&out.bytes).await;
                }
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        let out = conn.receive(&mut buf, handler);
        count(cfg, &out.events);
        if !out.bytes.is_empty() {
            stream.write_all(&out.bytes).await?;
        }
        if out.close {
            let _ = stream.shutdown().await;
            return Ok(());
        }
    }
}

fn count(cfg: &SpoeConfig, events: &[Event]) {
    let m = &cfg.metrics;
    for e in events {
        match e {
            Event::Hello {
                healthcheck: true, ..
            } => SpoeMetrics::inc(&m.healthchecks),
            Event::Hello {
                engine_id,
                max_frame_size,
                ..
            } => {
                SpoeMetrics::inc(&m.hellos);
                tracing::debug!(?engine_id, max_frame_size, "SPOE hello");
            }
            Event::Notify { .. } => SpoeMetrics::inc(&m.notifies),
            Event::AckTooBig => tracing::warn!("SPOE ACK exceeded max-frame-size; sent empty"),
            Event::Truncated {
                cut,
                max_frame_size,
            } => {
                if let Some(n) = m.note_truncation() {
                    tracing::warn!(
                        max_frame_size,
                        ?cut,
                        acks_cut = n,
                        "SPOE answers cut to fit max-frame-size (lists end early with <name>_truncated set); raise max-frame-size / tune.bufsize, or use the maps; logged at most every {}s",
                        super::TRUNCATION_LOG_EVERY.as_secs()
                    );
                }
            }
            Event::SkippedFrame(k) => {
                tracing::debug!(kind = k, "SPOE frame of unknown type skipped")
            }
            Event::HaproxyDisconnect { status, message } => {
                SpoeMetrics::inc(&m.disconnects);
                tracing::debug!(status, %message, "HAProxy closed the SPOE connection");
            }
            Event::Rejected { status, reason } => {
                SpoeMetrics::inc(&m.rejected);
                tracing::warn!(status = status.code(), %reason, "SPOE connection rejected");
            }
        }
    }
}
