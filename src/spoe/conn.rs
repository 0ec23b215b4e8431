//! Per-connection SPOP state machine, sans IO: bytes in, bytes out, and a verdict on
//! whether the connection stays open.
//!
//! Life of a connection (`ref/haproxy-spoe.md` §3–§5):
//! 1. HAProxy sends HAPROXY-HELLO; we answer AGENT-HELLO with version `2.0`, the smaller of
//!    the two `max-frame-size`s (HAProxy's offer, up to our bound), and capability
//!    `pipelining` (not `async`: see [`CAPABILITIES`]). A health-check hello (`healthcheck=true`) is answered and the
//!    connection closed. Before the HELLO, frames above [`codec::DEFAULT_FRAME_SIZE`] are
//!    refused (a HELLO is ~130 bytes).
//! 2. Each NOTIFY is answered by one ACK with the same stream-id/frame-id, cut to the
//!    negotiated frame size by the handler ([`NotifyHandler::handle_within`]). With
//!    pipelining several NOTIFYs may arrive in one read; each gets its ACK, in order, on
//!    this connection (valid under `async` too).
//! 3. HAPROXY-DISCONNECT is answered by AGENT-DISCONNECT (status 0) and the connection ends.
//!
//! Any protocol violation (garbage, oversized frame, NOTIFY before HELLO, fragments we did
//! not ask for, …) is answered by an AGENT-DISCONNECT carrying the matching status code, and
//! the connection closes. Nothing here can panic on input.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::codec::{
    self, kind, kv_get, varint_len, Action, DecodeError, Frame, KvList, Message, SpopCodec, Status,
    TypedData, FLAG_FIN, MIN_FRAME_SIZE,
};

/// The only SPOP version spoken (HAProxy 2.6 and later).
pub const SPOP_VERSION: &str = "2.0";
/// Capabilities announced in AGENT-HELLO: `pipelining` only. Every ACK goes back on the
/// connection its NOTIFY came on, so `async` would gain nothing; and with `async` HAProxy
/// 2.6 parks the frames in flight on a per-thread queue that survives the connection, so
/// when the agent dies those requests each wait `timeout processing` instead of failing at
/// once (measured: a killed agent then cost 200 ms per request for seconds; without it, the
/// first ~250 ms only). HAProxy 3.1+ dropped `async` altogether.
pub const CAPABILITIES: &str = "pipelining";

/// Answers NOTIFY messages. Implemented by the cluster handler; tests use closures.
pub trait NotifyHandler {
    /// The actions for the messages of one NOTIFY frame.
    fn handle(&self, messages: &[Message]) -> Vec<Action>;

    /// The actions for one NOTIFY within `room` bytes of ACK payload, and the names of the
    /// variables cut short or left out to fit. The default returns [`Self::handle`]'s
    /// answer whole; the connection then sends an empty ACK if it does not fit.
    fn handle_within(&self, messages: &[Message], room: usize) -> (Vec<Action>, Vec<&'static str>) {
        let _ = room;
        (self.handle(messages), Vec::new())
    }
}

impl<F: Fn(&[Message]) -> Vec<Action>> NotifyHandler for F {
    fn handle(&self, messages: &[Message]) -> Vec<Action> {
        self(messages)
    }
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for HAPROXY-HELLO.
    AwaitHello,
    /// Hello done; NOTIFY frames are answered.
    Processing,
    /// Finished; every further byte is ignored.
    Closed,
}

/// Something worth counting or logging that happened on the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A HELLO was accepted.
    Hello {
        /// A health-check probe.
        healthcheck: bool,
        /// HAProxy's engine id (absent for health checks).
        engine_id: Option<String>,
        /// The negotiated frame size.
        max_frame_size: u32,
    },
    /// A NOTIFY was answered.
    Notify {
        /// Number of messages in it.
        messages: usize,
    },
    /// An ACK would not fit the negotiated frame size; its actions were replaced.
    AckTooBig,
    /// An answer was cut to fit the negotiated frame size.
    Truncated {
        /// The variables cut short (lists) or left out.
        cut: Vec<&'static str>,
        /// The frame size in force.
        max_frame_size: u32,
    },
    /// A frame of an unknown type was skipped.
    SkippedFrame(u8),
    /// HAProxy said goodbye.
    HaproxyDisconnect {
        /// Its status code.
        status: u32,
        /// Its message.
        message: String,
    },
    /// We rejected the peer: an AGENT-DISCONNECT with this status was queued.
    Rejected {
        /// Status sent.
        status: Status,
        /// Why, for the log.
        reason: String,
    },
}

/// The SPOP state machine of one connection.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    codec: SpopCodec,
    /// Our own upper bound for `max-frame-size`.
    local_max: u32,
    engine_id: Option<String>,
}

/// What one call to [`Connection::receive`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes to write to the peer, in order.
    pub bytes: BytesMut,
    /// Things that happened.
    pub events: Vec<Event>,
    /// Close the connection after writing `bytes`.
    pub close: bool,
}

impl Connection {
    /// A fresh connection that accepts frames up to `max_frame_size` bytes (clamped to at
    /// least 256) until the HELLO negotiates a possibly smaller size.
    pub fn new(max_frame_size: u32) -> Self {
        let local_max = max_frame_size.max(MIN_FRAME_SIZE);
        Connection {
            phase: Phase::AwaitHello,
            codec: SpopCodec::new(local_max.min(codec::DEFAULT_FRAME_SIZE)),
            local_max,
            engine_id: None,
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// HAProxy's engine id once the HELLO named one.
    pub fn engine_id(&self) -> Option<&str> {
        self.engine_id.as_deref()
    }

    /// The frame size in force (negotiated after HELLO).
    pub fn max_frame_size(&self) -> u32 {
        self.codec.max_frame_size
    }

    /// Consumes every complete frame at the front of `input` and returns what to send.
    /// Incomplete trailing bytes stay in `input` for the next call.
    pub fn receive(&mut self, input: &mut BytesMut, handler: &dyn NotifyHandler) -> Output {
        let mut out = Output::default();
        while self.phase != Phase::Closed {
            match self.codec.decode(input) {
                Ok(None) => break,
                Ok(Some(raw)) => {
                    if raw.flags & FLAG_FIN == 0 || raw.kind == kind::UNSET {
                        self.reject(
                            &mut out,
                            Status::FragNotSupported,
                            "fragmented frame but fragmentation was not announced".into(),
                        );
                        break;
                    }
                    match Frame::from_raw(&raw) {
                        Ok(Some(frame)) => self.on_frame(frame, &mut out, handler),
                        Ok(None) => out.events.push(Event::SkippedFrame(raw.kind)),
                        Err(e) => self.reject_decode(&mut out, &e, raw.kind),
                    }
                }
                Err(e) => self.reject_decode(&mut out, &e, 255),
            }
        }
        if self.phase == Phase::Closed {
            input.clear();
            out.close = true;
        }
        out
    }

    /// Tells the machine the peer stayed silent too long (no HELLO in time, or idle);
    /// returns the AGENT-DISCONNECT (status 2) to send. The connection is closed after.
    pub fn timed_out(&mut self) -> Output {
        let mut out = Output::default();
        let reason = match self.phase {
            Phase::AwaitHello => "no HELLO in time",
            Phase::Processing => "idle timeout",
            Phase::Closed => return out,
        };
        self.reject(&mut out, Status::Timeout, reason.into());
        out.close = true;
        out
    }

    fn reject_decode(&mut self, out: &mut Output, e: &DecodeError, kind: u8) {
        self.reject(out, e.status(), format!("frame type {kind}: {e}"));
    }

    fn reject(&mut self, out: &mut Output, status: Status, reason: String) {
        Frame::agent_disconnect(status, status.message()).encode(&mut out.bytes);
        out.events.push(Event::Rejected { status, reason });
        self.phase = Phase::Closed;
    }

    fn on_frame(&mut self, frame: Frame, out: &mut Output, handler: &dyn NotifyHandler) {
        match (self.phase, frame) {
            (Phase::AwaitHello, Frame::HaproxyHello(kv)) => self.on_hello(&kv, out),
            (
                Phase::Processing,
                Frame::Notify {
                    stream_id,
                    frame_id,
                    messages,
                },
            ) => {
                let max = self.codec.max_frame_size;
                // type, flags, stream-id and frame-id come before the actions
                let header = 5 + varint_len(stream_id) + varint_len(frame_id);
                let room = (max as usize).saturating_sub(header);
                let (actions, cut) = handler.handle_within(&messages, room);
                if !cut.is_empty() {
                    out.events.push(Event::Truncated {
                        cut,
                        max_frame_size: max,
                    });
                }
                let mut ack = Frame::Ack {
                    stream_id,
                    frame_id,
                    actions,
                };
                let mut bytes = BytesMut::new();
                ack.encode(&mut bytes);
                if bytes.len() - 4 > max as usize {
                    // HAProxy cannot receive fragments: send an empty ACK instead.
                    out.events.push(Event::AckTooBig);
                    ack = Frame::Ack {
                        stream_id,
                        frame_id,
                        actions: Vec::new(),
                    };
                    bytes.clear();
                    ack.encode(&mut bytes);
                }
                out.bytes.extend_from_slice(&bytes);
                out.events.push(Event::Notify {
                    messages: messages.len(),
                });
            }
            (_, Frame::HaproxyDisconnect(kv)) => {
                let status = kv_get(&kv, "status-code")
                    .and_then(TypedData::as_u64)
                    .unwrap_or(u64::from(Status::Unknown.code()))
                    as u32;
                let message = kv_get(&kv, "message")
                    .and_then(TypedData::as_str)
                    .unwrap_or("")
                    .to_string();
                Frame::agent_disconnect(Status::Normal, "bye").encode(&mut out.bytes);
                out.events
                    .push(Event::HaproxyDisconnect { status, message });
                self.phase = Phase::Closed;
            }
            (Phase::AwaitHello, other) => self.reject(
                out,
                Status::Invalid,
                format!("{} before HELLO", frame_name(&other)),
            ),
            (_, other) => self.reject(
                out,
                Status::Invalid,
                format!("unexpected {}", frame_name(&other)),
            ),
        }
    }

    fn on_hello(&mut self, kv: &KvList, out: &mut Output) {
        let Some(versions) = kv_get(kv, "supported-versions") else {
            return self.reject(
                out,
                Status::NoVersion,
                "HELLO without supported-versions".into(),
            );
        };
        let versions = versions.as_str().unwrap_or("");
        if !versions.split(',').any(|v| v.trim() == SPOP_VERSION) {
            return self.reject(
                out,
                Status::BadVersion,
                format!("HAProxy offers versions {versions:?}, we speak {SPOP_VERSION}"),
            );
        }
        let Some(size) = kv_get(kv, "max-frame-size") else {
            return self.reject(
                out,
                Status::NoFrameSize,
                "HELLO without max-frame-size".into(),
            );
        };
        let Some(size) = size.as_u64() else {
            return self.reject(
                out,
                Status::BadFrameSize,
                "max-frame-size is not an integer".into(),
            );
        };
        if size < u64::from(MIN_FRAME_SIZE) {
            return self.reject(
                out,
                Status::BadFrameSize,
                format!("max-frame-size {size} below {MIN_FRAME_SIZE}"),
            );
        }
        if kv_get(kv, "capabilities").is_none() {
            return self.reject(
                out,
                Status::NoCapabilities,
                "HELLO without capabilities".into(),
            );
        }
        let negotiated = u64::from(self.local_max).min(size) as u32;
        let healthcheck = matches!(kv_get(kv, "healthcheck"), Some(TypedData::Bool(true)));
        self.engine_id = kv_get(kv, "engine-id")
            .and_then(TypedData::as_str)
            .map(str::to_string);
        Frame::AgentHello(vec![
            ("version".into(), TypedData::str(SPOP_VERSION)),
            ("max-frame-size".into(), TypedData::Uint32(negotiated)),
            ("capabilities".into(), TypedData::str(CAPABILITIES)),
        ])
        .encode(&mut out.bytes);
        out.events.push(Event::Hello {
            healthcheck,
            engine_id: self.engine_id.clone(),
            max_frame_size: negotiated,
        });
        self.codec.max_frame_size = negotiated;
        self.phase = if healthcheck {
            Phase::Closed
        } else {
            Phase::Processing
        };
    }
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::HaproxyHello(_) => "HAPROXY-HELLO",
        Frame::HaproxyDisconnect(_) => "HAPROXY-DISCONNECT",
        Frame::Notify { .. } => "NOTIFY",
        Frame::AgentHello(_) => "AGENT-HELLO",
        Frame::AgentDisconnect(_) => "AGENT-DISCONNECT",
        Frame::Ack { .. } => "ACK",
    }
}
