//! TCP stream framing (gossip-wire.md §5): optional label, optional `0a` encrypted frame
//! (AAD = its 5 header bytes + label), optional compress wrapper, then one message:
//! push/pull (header + node states + user state), ping, ack, user (`UserMsgLen` form)
//! or err.

use super::codec::{decode_body, decode_push_pull, encode_message_into, MAX_STREAM_BYTES};
use super::error::{Result, WireError};
use super::keyring::{Keyring, ENCRYPTION_OVERHEAD};
use super::lzw::lzw_decompress;
use super::message::{Message, MessageType};
use super::mp::{self, Reader};
use super::packet::{encode_compress, read_compress, strip_label, PacketOptions};

/// Most bytes a compressed stream may expand to (newer memberlist: 40 MiB).
pub const MAX_STREAM_DECOMPRESSED: usize = 40 * 1024 * 1024;

/// The message as it travels on a stream, before compression/encryption: like
/// [`super::encode_message`] except `User`, which gets the `{UserMsgLen}` header.
pub fn encode_stream_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match msg {
        Message::User(b) => {
            out.push(MessageType::User as u8);
            mp::w_map(&mut out, 1);
            mp::w_str(&mut out, "UserMsgLen");
            mp::w_int(&mut out, b.len() as i64);
            out.extend_from_slice(b);
        }
        m => encode_message_into(m, &mut out),
    }
    out
}

/// Frame one message for a TCP stream: compressed whenever `opts.compress` (as Go does,
/// even when larger), then the `0a` encrypted frame if `opts.keyring`, label first if
/// `opts.label`. `opts.crc` is ignored (no CRC on streams).
pub fn encode_stream(msg: &Message, opts: &PacketOptions) -> Vec<u8> {
    let mut buf = encode_stream_message(msg);
    if opts.compress {
        buf = encode_compress(&buf);
    }
    let label = opts
        .label
        .filter(|l| !l.is_empty())
        .map(|l| &l[..l.len().min(255)]);
    let mut out = Vec::with_capacity(buf.len() + ENCRYPTION_OVERHEAD + 8);
    if let Some(l) = label {
        out.push(MessageType::HasLabel as u8);
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    match opts.keyring {
        Some(ring) => {
            let mut header = [0u8; 5];
            header[0] = MessageType::Encrypt as u8;
            header[1..].copy_from_slice(&((buf.len() + ENCRYPTION_OVERHEAD) as u32).to_be_bytes());
            let mut aad = header.to_vec();
            aad.extend_from_slice(label.unwrap_or(&[]));
            out.extend_from_slice(&header);
            out.extend_from_slice(&ring.encrypt(&buf, &aad));
        }
        None => out.extend_from_slice(&buf),
    }
    out
}

/// Decode one message from the start of a TCP stream buffer (check, then parse).
///
/// `Ok(None)`: the bytes so far are a valid but incomplete prefix; read more and call
/// again. `Ok(Some((msg, consumed)))`: one message and how many bytes it used. With a
/// keyring a plaintext stream is refused ([`WireError::PlaintextOnEncrypted`]); an
/// encrypted frame without one gives [`WireError::EncryptedWithoutKeyring`]. Frames above
/// 20 MiB are refused before anything is buffered or allocated.
pub fn decode_stream(buf: &[u8], keyring: Option<&Keyring>) -> Result<Option<(Message, usize)>> {
    let (label, rest) = match strip_label(buf) {
        Ok(x) => x,
        Err(WireError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
    };
    let off = buf.len() - rest.len();
    let Some(&first) = rest.first() else {
        return Ok(None);
    };
    if first == MessageType::Encrypt as u8 {
        if rest.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as u64;
        if len > MAX_STREAM_BYTES {
            return Err(WireError::TooLarge {
                what: "encrypted stream frame",
                len,
                max: MAX_STREAM_BYTES,
            });
        }
        let ring = keyring.ok_or(WireError::EncryptedWithoutKeyring)?;
        let end = 5 + len as usize;
        if rest.len() < end {
            return Ok(None);
        }
        let mut aad = rest[..5].to_vec();
        aad.extend_from_slice(label.unwrap_or(&[]));
        let (plain, _) = ring.decrypt(&rest[5..end], &aad)?;
        // The frame is complete: truncation inside it is an error, not "need more".
        let (msg, _) = decode_inner(&plain, 0).map_err(|e| match e {
            WireError::Truncated => WireError::BadMsgpack {
                field: "encrypted stream",
                reason: "message truncated inside a complete frame",
            },
            e => e,
        })?;
        return Ok(Some((msg, off + end)));
    }
    if keyring.is_some() {
        return Err(WireError::PlaintextOnEncrypted);
    }
    match decode_inner(rest, 0) {
        Ok((msg, used)) => Ok(Some((msg, off + used))),
        Err(WireError::Truncated) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decode (compress →) message from `buf`; returns bytes used. `Truncated` if `buf`
/// ends early.
fn decode_inner(buf: &[u8], depth: u32) -> Result<(Message, usize)> {
    let (&t, body) = buf.split_first().ok_or(WireError::Truncated)?;
    let mut r = Reader::new(body);
    let msg = match MessageType::from_u8(t) {
        Some(MessageType::Compress) => {
            if depth > 0 {
                return Err(WireError::TooDeep);
            }
            let data = read_compress(&mut r)?;
            let raw = lzw_decompress(&data, MAX_STREAM_DECOMPRESSED)?;
            // Decompressed bytes are complete: any truncation inside is an error.
            let (msg, _) = match decode_inner(&raw, depth + 1) {
                Err(WireError::Truncated) => {
                    return Err(WireError::BadMsgpack {
                        field: "compressed stream",
                        reason: "decompressed message is truncated",
                    })
                }
                x => x?,
            };
            msg
        }
        Some(MessageType::PushPull) => Message::PushPull(decode_push_pull(&mut r)?),
        Some(MessageType::User) => {
            let mut len = 0u64;
            for _ in 0..r.map_len("user header")? {
                match r.key()? {
                    b"UserMsgLen" => len = r.uint("UserMsgLen")?,
                    _ => r.skip()?,
                }
            }
            if len > MAX_STREAM_BYTES {
                return Err(WireError::TooLarge {
                    what: "user message",
                    len,
                    max: MAX_STREAM_BYTES,
                });
            }
            Message::User(r.take(len as usize)?.to_vec())
        }
        Some(MessageType::Ping | MessageType::AckResp | MessageType::Err) => {
            decode_body(t, &mut r)?
        }
        Some(_) => return Err(WireError::UnexpectedMessageType(t)),
        None => return Err(WireError::UnknownMessageType(t)),
    };
    Ok((msg, 1 + r.pos()))
}
