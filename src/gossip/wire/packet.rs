//! UDP packet framing (gossip-wire.md §3): label → encryption → CRC → compress /
//! compound (recursive) → messages.

use super::codec::decode_body;
use super::error::{Result, WireError};
use super::keyring::Keyring;
use super::lzw::{lzw_compress, lzw_decompress};
use super::message::{Message, MessageType};
use super::mp::{self, Reader};

/// memberlist's `UDPBufferSize`: the budget of one gossip packet.
pub const UDP_BUFFER_SIZE: usize = 1400;
/// Largest datagram a receiver reads.
pub const MAX_PACKET_SIZE: usize = 65536;
/// Bytes of the compound header (type + count).
pub const COMPOUND_HEADER_OVERHEAD: usize = 2;
/// Bytes per compound part (its u16 length).
pub const COMPOUND_PART_OVERHEAD: usize = 2;
/// Bytes of the CRC header.
pub const CRC_OVERHEAD: usize = 5;
/// Most parts in one compound.
pub const MAX_COMPOUND_PARTS: usize = 255;
/// Most bytes all compress containers of one packet may expand to, together.
pub const MAX_PACKET_DECOMPRESSED: usize = 1 << 20;
/// Deepest nesting of compress/compound containers accepted.
pub const MAX_NESTING: u32 = 4;

/// How to frame outgoing bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketOptions<'a> {
    /// Encrypt with the primary key (version 1).
    pub keyring: Option<&'a Keyring>,
    /// Add the CRC header (packets only; Go does for gossip to peers with `PMax` ≥ 5).
    pub crc: bool,
    /// Packets: LZW-compress when strictly smaller. Streams: always compress.
    pub compress: bool,
    /// Label header (newer memberlist only; also GCM additional data). Keep `None` for
    /// stock Serf clusters.
    pub label: Option<&'a [u8]>,
}

/// What one datagram contained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedPacket {
    /// Messages decoded, in order (compound parts flattened).
    pub messages: Vec<Message>,
    /// Parts of compounds that could not be decoded (the good parts are in `messages`).
    pub errors: Vec<WireError>,
    /// The packet was encrypted.
    pub encrypted: bool,
    /// The packet had a (valid) CRC header.
    pub had_crc: bool,
    /// The label, if the packet had one.
    pub label: Option<Vec<u8>>,
}

/// A compound message (`07 | n | len_i... | msg_i...`) of at most 255 parts.
///
/// Part lengths are u16 on the wire: a part longer than 65535 bytes cannot be framed and
/// is left out (logged); parts beyond 255 are left out too (use [`encode_packet`], which
/// nests). Gossip parts are far below both limits.
pub fn encode_compound(messages: &[Vec<u8>]) -> Vec<u8> {
    let (fit, too_long): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = messages
        .iter()
        .take(MAX_COMPOUND_PARTS)
        .partition(|m| m.len() <= u16::MAX as usize);
    if !too_long.is_empty() || messages.len() > MAX_COMPOUND_PARTS {
        tracing::warn!(
            too_long = too_long.len(),
            parts = messages.len(),
            "compound: parts over 65535 bytes or beyond 255 left out"
        );
    }
    let messages = fit;
    let total: usize = messages.iter().map(|m| m.len() + 2).sum();
    let mut out = Vec::with_capacity(2 + total);
    out.push(MessageType::Compound as u8);
    out.push(messages.len() as u8);
    for m in &messages {
        out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    }
    for m in &messages {
        out.extend_from_slice(m);
    }
    out
}

/// A compress message: `09 | {Algo: 0, Buf: lzw(payload)}`.
pub fn encode_compress(payload: &[u8]) -> Vec<u8> {
    let c = lzw_compress(payload);
    let mut out = Vec::with_capacity(c.len() + 16);
    out.push(MessageType::Compress as u8);
    mp::w_map(&mut out, 2);
    mp::w_str(&mut out, "Algo");
    mp::w_uint(&mut out, 0);
    mp::w_str(&mut out, "Buf");
    mp::w_raw(&mut out, &c);
    out
}

fn compound_tree(messages: &[Vec<u8>]) -> Vec<u8> {
    if messages.len() <= MAX_COMPOUND_PARTS {
        return encode_compound(messages);
    }
    // More than 255: group them into inner compounds (each ≤ 255 parts and ≤ 65535 bytes,
    // a group of one is the message itself) inside an outer compound; receivers recurse.
    let mut groups: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<Vec<u8>> = Vec::new();
    let mut cur_size = COMPOUND_HEADER_OVERHEAD;
    let flush = |cur: &mut Vec<Vec<u8>>, groups: &mut Vec<Vec<u8>>| match cur.len() {
        0 => {}
        1 => groups.push(cur.pop().unwrap_or_default()),
        _ => groups.push(encode_compound(&std::mem::take(cur))),
    };
    for m in messages {
        let add = COMPOUND_PART_OVERHEAD + m.len();
        if cur.len() == MAX_COMPOUND_PARTS || cur_size + add > u16::MAX as usize {
            flush(&mut cur, &mut groups);
            cur_size = COMPOUND_HEADER_OVERHEAD;
        }
        cur.push(m.clone());
        cur_size += add;
    }
    flush(&mut cur, &mut groups);
    if groups.len() >= messages.len() {
        // No progress (parts too large to group): frame what fits.
        return encode_compound(messages);
    }
    compound_tree(&groups)
}

/// Frame encoded messages (each: type byte + body, e.g. from
/// [`super::encode_message`]) as one UDP datagram: compound if more than one (nested
/// compounds above 255), compress if strictly smaller, CRC, encryption (version 1,
/// primary key, label as AAD), label. The caller keeps the result under its budget.
pub fn encode_packet(messages: &[Vec<u8>], opts: &PacketOptions) -> Vec<u8> {
    let mut buf = match messages {
        [one] => one.clone(),
        _ => compound_tree(messages),
    };
    if opts.compress {
        let c = encode_compress(&buf);
        if c.len() < buf.len() {
            buf = c;
        }
    }
    if opts.crc {
        let crc = crc32fast::hash(&buf);
        let mut out = Vec::with_capacity(buf.len() + CRC_OVERHEAD);
        out.push(MessageType::HasCrc as u8);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&buf);
        buf = out;
    }
    let label = opts.label.filter(|l| !l.is_empty());
    if let Some(ring) = opts.keyring {
        buf = ring.encrypt(&buf, label.unwrap_or(&[]));
    }
    if let Some(l) = label {
        let l = &l[..l.len().min(255)];
        let mut out = Vec::with_capacity(buf.len() + 2 + l.len());
        out.push(MessageType::HasLabel as u8);
        out.push(l.len() as u8);
        out.extend_from_slice(l);
        out.extend_from_slice(&buf);
        buf = out;
    }
    buf
}

/// Strip a label header if present: `(label, rest)`.
pub(crate) fn strip_label(bytes: &[u8]) -> Result<(Option<&[u8]>, &[u8])> {
    if bytes.first() != Some(&(MessageType::HasLabel as u8)) {
        return Ok((None, bytes));
    }
    let n = *bytes.get(1).ok_or(WireError::Truncated)? as usize;
    if n == 0 {
        return Err(WireError::BadLabel);
    }
    if bytes.len() < 2 + n {
        return Err(WireError::Truncated);
    }
    Ok((Some(&bytes[2..2 + n]), &bytes[2 + n..]))
}

fn looks_like_plaintext(bytes: &[u8]) -> bool {
    let mut p = DecodedPacket::default();
    match bytes.first() {
        Some(&t) if t == MessageType::HasCrc as u8 => true,
        Some(_) => {
            let mut budget = MAX_PACKET_DECOMPRESSED;
            decode_payload(bytes, 0, &mut p, &mut budget).is_ok() && p.errors.is_empty()
        }
        None => false,
    }
}

/// Decode one UDP datagram: strip the label, decrypt (versions 0 and 1, every key of
/// `keyring`), check the CRC, then unwrap compress/compound recursively.
///
/// With a keyring, plaintext is refused ([`WireError::PlaintextOnEncrypted`]); without
/// one, something that only parses as ciphertext gives
/// [`WireError::EncryptedWithoutKeyring`]. Outer-layer failures are `Err`; a bad part of
/// a compound lands in `errors` and the good parts are kept.
pub fn decode_packet(bytes: &[u8], keyring: Option<&Keyring>) -> Result<DecodedPacket> {
    if bytes.len() > MAX_PACKET_SIZE {
        return Err(WireError::TooLarge {
            what: "packet",
            len: bytes.len() as u64,
            max: MAX_PACKET_SIZE as u64,
        });
    }
    let (label, rest) = strip_label(bytes)?;
    let mut out = DecodedPacket {
        label: label.map(<[u8]>::to_vec),
        ..DecodedPacket::default()
    };
    let plain_buf;
    let mut buf = rest;
    if let Some(ring) = keyring {
        let &first = buf.first().ok_or(WireError::Truncated)?;
        if first > 1 {
            return Err(if MessageType::from_u8(first).is_some() {
                WireError::PlaintextOnEncrypted
            } else {
                WireError::UnsupportedEncryptionVersion(first)
            });
        }
        match ring.decrypt(buf, label.unwrap_or(&[])) {
            Ok((p, _)) => plain_buf = p,
            Err(e) => {
                return Err(if looks_like_plaintext(buf) {
                    WireError::PlaintextOnEncrypted
                } else {
                    e
                })
            }
        }
        buf = &plain_buf;
        out.encrypted = true;
    }
    if buf.first() == Some(&(MessageType::HasCrc as u8)) {
        if buf.len() < CRC_OVERHEAD {
            return Err(WireError::Truncated);
        }
        let expected = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let actual = crc32fast::hash(&buf[CRC_OVERHEAD..]);
        if expected != actual {
            return Err(WireError::BadCrc { expected, actual });
        }
        buf = &buf[CRC_OVERHEAD..];
        out.had_crc = true;
    }
    let mut budget = MAX_PACKET_DECOMPRESSED;
    match decode_payload(buf, 0, &mut out, &mut budget) {
        Ok(()) => Ok(out),
        Err(e) => {
            let ciphertext_like = keyring.is_none()
                && !out.had_crc
                && matches!(buf.first(), Some(0 | 1))
                && buf.len() >= super::keyring::ENCRYPTION_OVERHEAD;
            Err(if ciphertext_like {
                WireError::EncryptedWithoutKeyring
            } else {
                e
            })
        }
    }
}

/// Decode `buf` (one message or container). Errors of compound parts are recorded in
/// `out.errors`; anything else is returned.
fn decode_payload(
    buf: &[u8],
    depth: u32,
    out: &mut DecodedPacket,
    budget: &mut usize,
) -> Result<()> {
    if depth > MAX_NESTING {
        return Err(WireError::TooDeep);
    }
    let (&t, body) = buf.split_first().ok_or(WireError::Truncated)?;
    match MessageType::from_u8(t) {
        Some(MessageType::Compound) => {
            let (&n, rest) = body.split_first().ok_or(WireError::Truncated)?;
            let n = n as usize;
            if rest.len() < 2 * n {
                return Err(WireError::Truncated);
            }
            let (lens, mut parts) = rest.split_at(2 * n);
            for i in 0..n {
                let len = u16::from_be_bytes([lens[2 * i], lens[2 * i + 1]]) as usize;
                if parts.len() < len {
                    // Go processes the complete leading parts and counts the rest.
                    out.errors.push(WireError::Truncated);
                    break;
                }
                let (part, tail) = parts.split_at(len);
                parts = tail;
                if let Err(e) = decode_payload(part, depth + 1, out, budget) {
                    out.errors.push(e);
                }
            }
            Ok(())
        }
        Some(MessageType::Compress) => {
            // One budget for the whole packet: a compound of many compress parts cannot
            // multiply it.
            let raw = decompress_body(body, *budget)?;
            *budget -= raw.len();
            decode_payload(&raw, depth + 1, out, budget)
        }
        // Only messages Go handles on its packet path.
        Some(
            MessageType::Ping
            | MessageType::IndirectPing
            | MessageType::AckResp
            | MessageType::NackResp
            | MessageType::Suspect
            | MessageType::Alive
            | MessageType::Dead
            | MessageType::User,
        ) => {
            let m = decode_body(t, &mut Reader::new(body))?;
            out.messages.push(m);
            Ok(())
        }
        Some(_) => Err(WireError::UnexpectedMessageType(t)),
        None => Err(WireError::UnknownMessageType(t)),
    }
}

/// Parse a compress body (`{Algo, Buf}`) from `r` and return the LZW bytes (borrowed).
pub(crate) fn read_compress<'a>(r: &mut Reader<'a>) -> Result<std::borrow::Cow<'a, [u8]>> {
    let mut algo = 0u64;
    let mut data = None;
    for _ in 0..r.map_len("compress")? {
        match r.key()? {
            b"Algo" => algo = r.uint("Algo")?,
            b"Buf" => data = r.bytes("Buf")?,
            _ => r.skip()?,
        }
    }
    if algo != 0 {
        return Err(WireError::UnsupportedCompression(algo));
    }
    data.ok_or(WireError::MissingField("Buf"))
}

/// Decompress a compress message body (after the `09` byte).
pub(crate) fn decompress_body(body: &[u8], max_out: usize) -> Result<Vec<u8>> {
    let mut r = Reader::new(body);
    let data = read_compress(&mut r)?;
    lzw_decompress(&data, max_out)
}
