//! A blocking Serf RPC client (what serf's `client/rpc_client.go` does, for haserf's own
//! CLI verbs): connect, handshake, `auth` when a token is given, then requests whose
//! response bodies come back as JSON values, and streamed records for `query`, `monitor`
//! and `stream`. Works against a haserf agent and a stock serf agent alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::codec::{decode_header, decode_value, encode_request, Command, Request, IPC_VERSION};

/// Largest response buffered (a members list of a large cluster fits easily).
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// One connection to an agent's RPC.
#[derive(Debug)]
pub struct RpcClient {
    stream: TcpStream,
    buf: Vec<u8>,
    seq: u64,
}

/// A response: serf's error string ("" = success) and the body, if the command has one.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcResponse {
    /// The sequence number it answers.
    pub seq: u64,
    /// Serf's error string.
    pub error: String,
    /// The body as JSON.
    pub body: Option<Value>,
}

impl RpcClient {
    /// Connects to `addr` (`IP:PORT` or `HOST:PORT`) within `timeout`, handshakes and, with
    /// a token, authenticates. Errors are serf's wording where serf has one.
    pub fn connect(addr: &str, auth: Option<&str>, timeout: Duration) -> Result<RpcClient, String> {
        let sa: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|e| format!("{addr}: {e}"))?
            .next()
            .ok_or_else(|| format!("{addr}: no address"))?;
        let stream = TcpStream::connect_timeout(&sa, timeout)
            .map_err(|e| format!("Error connecting to the agent at {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let mut c = RpcClient {
            stream,
            buf: Vec::new(),
            seq: 0,
        };
        let r = c.call(
            Command::Handshake {
                version: i64::from(IPC_VERSION),
            },
            false,
        )?;
        if !r.error.is_empty() {
            return Err(r.error);
        }
        if let Some(key) = auth.filter(|k| !k.is_empty()) {
            let r = c.call(
                Command::Auth {
                    key: key.to_string(),
                },
                false,
            )?;
            if !r.error.is_empty() {
                return Err(r.error);
            }
        }
        Ok(c)
    }

    /// Sets the read timeout (`None`: block; for `monitor` and long queries).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> Result<(), String> {
        self.stream.set_read_timeout(t).map_err(|e| e.to_string())
    }

    /// Sends `command` and reads its response; `body`: whether the command answers with a
    /// body (serf sends none with `Authentication required`).
    pub fn call(&mut self, command: Command, body: bool) -> Result<RpcResponse, String> {
        let seq = self.send(command)?;
        let mut r = self.read_header()?;
        if r.seq != seq {
            return Err(format!(
                "response to request {} while waiting for {seq}",
                r.seq
            ));
        }
        if body && r.error != super::codec::errors::AUTH_REQUIRED {
            r.body = Some(self.read_value()?);
        }
        Ok(r)
    }

    /// Sends `command` without waiting; returns its sequence number (its records follow
    /// with [`RpcClient::record`]).
    pub fn send(&mut self, command: Command) -> Result<u64, String> {
        self.seq += 1;
        let bytes = encode_request(&Request {
            seq: self.seq,
            command,
        });
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("write to the agent: {e}"))?;
        Ok(self.seq)
    }

    /// The next header with its record body (stream records always have one).
    pub fn record(&mut self) -> Result<(u64, Value), String> {
        let h = self.read_header()?;
        if !h.error.is_empty() {
            return Err(h.error);
        }
        Ok((h.seq, self.read_value()?))
    }

    /// Reads the next response header (no body).
    pub fn read_header(&mut self) -> Result<RpcResponse, String> {
        loop {
            if let Some((h, used)) = decode_header(&self.buf).map_err(|e| e.to_string())? {
                self.buf.drain(..used);
                return Ok(RpcResponse {
                    seq: h.seq,
                    error: h.error,
                    body: None,
                });
            }
            self.fill()?;
        }
    }

    fn read_value(&mut self) -> Result<Value, String> {
        loop {
            if let Some((v, used)) = decode_value(&self.buf).map_err(|e| e.to_string())? {
                self.buf.drain(..used);
                return Ok(v);
            }
            self.fill()?;
        }
    }

    fn fill(&mut self) -> Result<(), String> {
        if self.buf.len() > MAX_RESPONSE_BYTES {
            return Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
        }
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("the agent closed the connection".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read from the agent: {e}")),
        }
    }
}
