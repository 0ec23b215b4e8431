//! The tokio driver of the SPOE agent (`haserf::spoe::serve_listener`): timeouts, the
//! connection limit, shutdown, and a full HELLO/NOTIFY/DISCONNECT exchange over TCP.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use haserf::spoe::codec::{kv_get, Frame, Message, SpopCodec, TypedData};
use haserf::spoe::{serve_listener, ClusterView, SpoeConfig, SpoeMetrics, StaticView};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Decoder;

struct Agent {
    addr: std::net::SocketAddr,
    metrics: Arc<SpoeMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(tune: impl FnOnce(&mut SpoeConfig)) -> Agent {
    let listener = TcpListener::bind((support::alloc_ip(), 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = SpoeConfig::new(addr);
    tune(&mut cfg);
    let metrics = cfg.metrics.clone();
    let view: Arc<dyn ClusterView> = Arc::new(StaticView::default());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_listener(listener, cfg, view, async {
        let _ = rx.await;
    }));
    Agent {
        addr,
        metrics,
        stop: Some(tx),
        task,
    }
}

/// Reads frames until the peer closes (bounded by 10 s).
async fn read_all_frames(c: &mut TcpStream) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while c.read_buf(&mut buf).await.unwrap_or(0) > 0 {}
    })
    .await
    .expect("the agent closes the connection");
    let mut codec = SpopCodec::new(u32::MAX);
    let mut out = Vec::new();
    while let Some(raw) = codec.decode(&mut buf).unwrap() {
        out.push(Frame::from_raw(&raw).unwrap().unwrap());
    }
    out
}

fn status_of(f: &Frame) -> u64 {
    match f {
        Frame::AgentDisconnect(kv) => kv_get(kv, "status-code").unwrap().as_u64().unwrap(),
        other => panic!("expected AGENT-DISCONNECT, got {other:?}"),
    }
}

fn hello() -> Frame {
    Frame::HaproxyHello(vec![
        ("supported-versions".into(), TypedData::str("2.0")),
        ("max-frame-size".into(), TypedData::Uint32(16380)),
        ("capabilities".into(), TypedData::str("pipelining,async")),
        ("engine-id".into(), TypedData::str("test-engine")),
    ])
}

#[tokio::test]
async fn a_connection_without_hello_is_closed_with_status_2_after_the_hello_timeout() {
    let a = start(|c| c.hello_timeout = Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(a.addr).await.unwrap();
    let t = std::time::Instant::now();
    let frames = read_all_frames(&mut c).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(status_of(&frames[0]), 2);
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(SpoeMetrics::get(&a.metrics.rejected), 1);
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_status_2_after_the_idle_timeout() {
    let a = start(|c| c.idle_timeout = Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(a.addr).await.unwrap();
    c.write_all(&hello().to_bytes()).await.unwrap();
    let frames = read_all_frames(&mut c).await;
    assert!(matches!(frames[0], Frame::AgentHello(_)));
    assert_eq!(status_of(&frames[1]), 2);
}

#[tokio::test]
async fn hello_pipelined_notifies_and_disconnect_over_tcp() {
    let a = start(|_| {}).await;
    let mut c = TcpStream::connect(a.addr).await.unwrap();
    let mut bytes = hello().to_bytes();
    for fid in 1..=3 {
        bytes.extend(
            Frame::Notify {
                stream_id: 7,
                frame_id: fid,
                messages: vec![Message {
                    name: "haserf-node".into(),
                    args: vec![("node".into(), TypedData::str("nobody"))],
                }],
            }
            .to_bytes(),
        );
    }
    bytes.extend(
        Frame::HaproxyDisconnect(vec![
            ("status-code".into(), TypedData::Uint32(0)),
            ("message".into(), TypedData::str("bye")),
        ])
        .to_bytes(),
    );
    c.write_all(&bytes).await.unwrap();
    let frames = read_all_frames(&mut c).await;
    assert_eq!(frames.len(), 5, "{frames:?}");
    for (i, f) in frames[1..4].iter().enumerate() {
        match f {
            Frame::Ack {
                stream_id: 7,
                frame_id,
                actions,
            } => {
                assert_eq!(*frame_id, i as u64 + 1);
                assert_eq!(actions.len(), 2, "node_alive + node_status");
            }
            other => panic!("expected an ACK, got {other:?}"),
        }
    }
    assert_eq!(status_of(&frames[4]), 0);
    assert_eq!(SpoeMetrics::get(&a.metrics.notifies), 3);
    assert_eq!(SpoeMetrics::get(&a.metrics.disconnects), 1);
}

#[tokio::test]
async fn connections_above_the_limit_are_refused_and_counted() {
    let a = start(|c| c.max_connections = 1).await;
    let mut first = TcpStream::connect(a.addr).await.unwrap();
    first.write_all(&hello().to_bytes()).await.unwrap();
    let mut head = [0u8; 4];
    first.read_exact(&mut head).await.unwrap();
    let mut second = TcpStream::connect(a.addr).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut buf))
        .await
        .expect("refused connections are closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(SpoeMetrics::get(&a.metrics.refused), 1);
}

#[tokio::test]
async fn serve_returns_when_the_shutdown_future_completes() {
    let mut a = start(|_| {}).await;
    let _open = TcpStream::connect(a.addr).await.unwrap();
    a.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut a.task)
        .await
        .expect("serve ends")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(a.addr).await.is_err(), "listener closed");
}
