//! The status socket server against a real unix socket: JSON lines, errors that keep the
//! connection and the agent alive, mode 0600, stale-socket handling.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use haserf::client::socket::{request, ClientError};
use haserf::control::model::Request;
use haserf::control::server::{Handler, SocketOptions, StatusServer};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

struct Fixed;

impl Handler for Fixed {
    fn handle(&self, request: Request) -> Value {
        match request {
            Request::Members => json!({"members": []}),
            _ => json!({"ok": true}),
        }
    }
}

async fn start(dir: &tempfile::TempDir) -> (Arc<StatusServer>, std::path::PathBuf) {
    let path = dir.path().join("sub/haserf.sock");
    let server = Arc::new(
        StatusServer::bind(&SocketOptions::new(&path))
            .await
            .unwrap(),
    );
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(Arc::new(Fixed)).await });
    (server, path)
}

#[tokio::test]
async fn garbage_gets_an_error_reply_and_the_connection_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = start(&dir).await;
    let stream = UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"\x00\xffgarbage\n{\"cmd\":\"nope\"}\n{\"cmd\":\"members\"}\n")
        .await
        .unwrap();
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(first["error"].is_string(), "{first}");
    let second: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(
        second["error"].as_str().unwrap().contains("nope"),
        "{second}"
    );
    let third: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(third, json!({"members": []}));
}

#[tokio::test]
async fn the_client_gets_the_reply_object() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = start(&dir).await;
    assert_eq!(
        request(&path, &Request::Status).await.unwrap(),
        json!({"ok": true})
    );
}

#[tokio::test]
async fn the_socket_is_created_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, path) = start(&dir).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_live_socket_is_not_stolen_but_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (server, path) = start(&dir).await;
    let second = StatusServer::bind(&SocketOptions::new(&path)).await;
    assert!(
        second.is_err(),
        "a second agent must not take a live socket"
    );
    drop(second);
    // A stale file (no listener) is replaced.
    std::fs::remove_file(&path).unwrap();
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    drop(server);
    let again = StatusServer::bind(&SocketOptions::new(&path)).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

#[tokio::test]
async fn the_socket_file_is_removed_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.sock");
    let server = StatusServer::bind(&SocketOptions::new(&path))
        .await
        .unwrap();
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());
}

#[tokio::test]
async fn a_client_without_agent_gets_a_connect_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let err = request(&path, &Request::Status).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }));
    assert!(err.to_string().contains("absent.sock"));
}

/// Answers `members` with one long list (about 3 KB).
struct Long;

impl Handler for Long {
    fn handle(&self, _: Request) -> Value {
        json!({"members": vec!["x".repeat(100); 30]})
    }
}

#[tokio::test]
async fn a_framed_chunked_reply_comes_in_pieces_each_asked_for_with_an_empty_line() {
    use tokio::io::AsyncReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haserf.sock");
    let server = Arc::new(
        StatusServer::bind(&SocketOptions::new(&path))
            .await
            .unwrap(),
    );
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(Arc::new(Long)).await });
    let stream = UnixStream::connect(&path).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut r = BufReader::new(read);
    let want = serde_json::to_vec(&Long.handle(Request::Members)).unwrap();

    // framed without chunks: the header line, then the whole reply line
    write
        .write_all(b"{\"cmd\":\"members\",\"framed\":true}\n")
        .await
        .unwrap();
    let mut header = String::new();
    r.read_line(&mut header).await.unwrap();
    assert_eq!(header, format!("#{}\n", want.len()));
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end().as_bytes(), want.as_slice());

    // chunked: 256 bytes, nothing more until an empty line asks for the next piece
    write
        .write_all(b"{\"cmd\":\"members\",\"framed\":true,\"chunk\":256}\n")
        .await
        .unwrap();
    header.clear();
    r.read_line(&mut header).await.unwrap();
    assert_eq!(header, format!("#{}\n", want.len()));
    let total = want.len() + 1;
    let mut body = Vec::new();
    while body.len() < total {
        let piece = 256.min(total - body.len());
        let mut buf = vec![0; piece];
        r.read_exact(&mut buf).await.unwrap();
        body.extend_from_slice(&buf);
        if body.len() < total {
            let mut extra = [0u8; 1];
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(100), r.read(&mut extra))
                    .await;
            assert!(early.is_err(), "a piece came before it was asked for");
            write.write_all(b"\n").await.unwrap();
        }
    }
    assert_eq!(&body[..want.len()], want.as_slice());
    assert_eq!(body[want.len()], b'\n');

    // the connection keeps serving plain lines
    write.write_all(b"{\"cmd\":\"members\"}\n").await.unwrap();
    line.clear();
    r.read_line(&mut line).await.unwrap();
    assert_eq!(line.trim_end().as_bytes(), want.as_slice());
}
