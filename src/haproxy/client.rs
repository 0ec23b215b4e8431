//! Async runtime API client over a unix socket or TCP.
//!
//! Every call opens a fresh connection (so a connection never outlives a reload: an old
//! worker keeps answering on connections opened before the reload, with its old pid, and
//! changes nothing), switches it to interactive mode (`prompt`) and pipelines all commands,
//! one per line, in a single write, then `quit`. Replies are split on the `> ` prompt, which
//! also works for the 2.6 replies that lack the blank-line terminator.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::command::Command;
use super::error::{ClientError, CommandError};

/// Where the runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// `IP:PORT` (or `host:port`).
    Tcp(String),
}

impl Endpoint {
    /// `IP:PORT` (also `ipv4@IP:PORT`, `tcp@…`) is TCP; anything else is a unix socket path
    /// (`unix@PATH` accepted).
    pub fn parse(s: &str) -> Endpoint {
        if let Some(p) = s.strip_prefix("unix@") {
            return Endpoint::Unix(p.into());
        }
        let t = s
            .strip_prefix("ipv4@")
            .or_else(|| s.strip_prefix("ipv6@"))
            .or_else(|| s.strip_prefix("tcp@"))
            .unwrap_or(s);
        if t.parse::<std::net::SocketAddr>().is_ok() {
            Endpoint::Tcp(t.into())
        } else {
            Endpoint::Unix(s.into())
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(a) => f.write_str(a),
        }
    }
}

/// Runtime API client. Cheap to clone; holds no connection.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

/// Replies to `show info`, `show stat` and `show servers state`, read in one round trip.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `show info` text.
    pub info: String,
    /// `show stat` text.
    pub stat: String,
    /// `show servers state` text.
    pub servers_state: String,
}

impl Client {
    /// A client for `socket` (path or `IP:PORT`) with a 5 s timeout per exchange.
    pub fn new(socket: &str) -> Client {
        Client {
            endpoint: Endpoint::parse(socket),
            timeout: Duration::from_secs(5),
        }
    }

    /// Sets the timeout of one whole exchange (connect, write, read to the end).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends raw command lines on one connection and returns one raw reply per line
    /// (terminators removed).
    pub async fn exchange(&self, lines: &[String]) -> Result<Vec<String>, ClientError> {
        for l in lines {
            if l.contains('\n') || l.contains(';') || l.trim() == "quit" || l.trim() == "prompt" {
                return Err(ClientError::Invalid(format!("bad command line {l:?}")));
            }
        }
        let mut req = String::with_capacity(16 + lines.iter().map(|l| l.len() + 1).sum::<usize>());
        req.push_str("prompt\n");
        for l in lines {
            req.push_str(l);
            req.push('\n');
        }
        req.push_str("quit\n");
        let endpoint = self.endpoint.to_string();
        let io = |source| ClientError::Io {
            endpoint: endpoint.clone(),
            source,
        };
        let fut = async {
            let raw = match &self.endpoint {
                Endpoint::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await.map_err(io)?;
                    pipeline(s, req.as_bytes()).await.map_err(io)?
                }
                Endpoint::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await.map_err(io)?;
                    let _ = s.set_nodelay(true);
                    pipeline(s, req.as_bytes()).await.map_err(io)?
                }
            };
            Ok::<_, ClientError>(raw)
        };
        let raw = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: endpoint.clone(),
                timeout_ms: self.timeout.as_millis(),
            })??;
        let text = String::from_utf8_lossy(&raw);
        let replies = split_prompt_replies(&text);
        // first reply belongs to `prompt` itself
        let replies: Vec<String> = replies.into_iter().skip(1).collect();
        if replies.len() < lines.len() {
            // a non-admin `prompt`-less answer (e.g. Permission denied on every line) still
            // produces prompts; fewer replies means the connection was cut.
            return Err(ClientError::Truncated {
                endpoint,
                sent: lines.len(),
                got: replies.len(),
            });
        }
        Ok(replies.into_iter().take(lines.len()).collect())
    }

    /// Sends commands (validated) in one round trip; returns each command's outcome.
    pub async fn run(
        &self,
        commands: &[Command],
    ) -> Result<Vec<Result<String, CommandError>>, ClientError> {
        let lines: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
        let replies = self.exchange(&lines).await?;
        Ok(commands
            .iter()
            .zip(replies)
            .map(|(c, r)| c.classify(&r).map(|_| r))
            .collect())
    }

    /// Sends commands in one round trip; the first refused command becomes the error.
    pub async fn run_all(&self, commands: &[Command]) -> Result<Vec<String>, ClientError> {
        let out = self.run(commands).await?;
        let mut ok = Vec::with_capacity(out.len());
        for (c, r) in commands.iter().zip(out) {
            match r {
                Ok(s) => ok.push(s),
                Err(error) => {
                    return Err(ClientError::Command {
                        command: c.to_string(),
                        error,
                    })
                }
            }
        }
        Ok(ok)
    }

    /// One `show …` command; an error reply becomes a typed error.
    pub async fn show(&self, what: &str) -> Result<String, ClientError> {
        let cmd = Command::Show(what.to_string());
        let mut r = self.run_all(std::slice::from_ref(&cmd)).await?;
        Ok(r.pop().unwrap_or_default())
    }

    /// `show info`, `show stat -1 4 -1` (servers only) and `show servers state` in one
    /// round trip.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        let cmds = [
            Command::Show("show info".into()),
            Command::Show("show stat".into()),
            Command::Show("show servers state".into()),
        ];
        let mut r = self.run_all(&cmds).await?;
        let servers_state = r.pop().unwrap_or_default();
        let stat = r.pop().unwrap_or_default();
        let info = r.pop().unwrap_or_default();
        Ok(Snapshot {
            info,
            stat,
            servers_state,
        })
    }
}

/// Writes the whole request while reading the answer to EOF (concurrently, so a large
/// pipeline cannot deadlock on full socket buffers).
async fn pipeline<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    req: &[u8],
) -> std::io::Result<Vec<u8>> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let write = async {
        wr.write_all(req).await?;
        wr.flush().await?;
        Ok::<_, std::io::Error>(())
    };
    let read = async {
        let mut buf = Vec::with_capacity(64 * 1024);
        rd.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let (w, r) = tokio::join!(write, read);
    let buf = r?;
    // a write error after HAProxy closed (e.g. it stopped reading) is not fatal if we got
    // the replies; the caller counts them
    if let Err(e) = w {
        if buf.is_empty() {
            return Err(e);
        }
    }
    Ok(buf)
}

/// Splits interactive-mode output into replies: every reply ends with a `> ` prompt at the
/// start of a line. Blank-line terminators are removed; a non-empty reply keeps one final
/// newline. Output after the last prompt (if the
/// connection closed mid-reply) is dropped.
pub fn split_prompt_replies(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let at_line_start = i == 0 || b[i - 1] == b'\n';
        if at_line_start && b[i] == b'>' && b[i + 1] == b' ' {
            let reply = text[start..i].trim_end_matches('\n');
            out.push(if reply.is_empty() {
                String::new()
            } else {
                format!("{reply}\n")
            });
            i += 2;
            start = i;
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_with_an_ip_and_port_are_tcp_and_the_rest_unix_paths() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:9999"),
            Endpoint::Tcp("127.0.0.1:9999".into())
        );
        assert_eq!(
            Endpoint::parse("/run/haproxy/admin.sock"),
            Endpoint::Unix("/run/haproxy/admin.sock".into())
        );
        assert_eq!(
            Endpoint::parse("unix@admin.sock"),
            Endpoint::Unix("admin.sock".into())
        );
    }

    #[test]
    fn prompt_mode_output_splits_into_one_reply_per_command() {
        let raw =
            "\n> IP changed from 'a' to 'b'\n\n> \n> No such server.\n\n> Server deleted.\n> ";
        let r = split_prompt_replies(raw);
        assert_eq!(
            r,
            vec![
                "",
                "IP changed from 'a' to 'b'\n",
                "",
                "No such server.\n",
                "Server deleted.\n"
            ]
        );
    }
}
