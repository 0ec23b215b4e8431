//! The web hosts' HTTP app: answers every request with `200`, its node name in the body and
//! in an `X-Node` header, and closes the connection. Bounded by `--max-secs`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Serves on `bind` as node `name` until `max_secs` pass.
pub fn serve(bind: &str, name: &str, max_secs: u64) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let name = name.to_string();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("app: bind {bind}: {e}"))?;
        let body = format!("{name}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nX-Node: {name}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response: &'static str = Box::leak(response.into_boxed_str());
        let serve = async {
            loop {
                let (mut sock, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(_) => continue,
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    let read = async {
                        loop {
                            let n = sock.read(&mut buf).await?;
                            if n == 0 {
                                break;
                            }
                            seen.extend_from_slice(&buf[..n]);
                            if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 65536 {
                                break;
                            }
                        }
                        sock.write_all(response.as_bytes()).await?;
                        sock.shutdown().await
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
                });
            }
        };
        tokio::select! {
            r = serve => r,
            _ = tokio::time::sleep(Duration::from_secs(max_secs)) => Ok(()),
        }
    })
}
