//! Serf and memberlist wire formats: typed messages and their byte codecs.
//!
//! Byte-compatible with Go memberlist 0.2.x / Serf 0.9.x (and newer: labels, signed ints),
//! see `shared/ref/gossip-wire.md`. Everything here is sans-IO: bytes in, values out.
//!
//! - [`encode_message`] / [`decode_message`]: one memberlist message (type byte + msgpack).
//! - [`encode_serf_message`] / [`decode_serf_message`]: Serf payloads of user messages.
//! - [`encode_packet`] / [`decode_packet`]: UDP datagrams (compound, compress, CRC,
//!   encryption, label).
//! - [`encode_stream`] / [`decode_stream`]: TCP streams (push/pull, ping/ack, user, err).
//! - [`encode_tags`] / [`decode_tags`], conflict and key-query payloads, [`Keyring`],
//!   [`lzw_compress`] / [`lzw_decompress`].

mod codec;
mod error;
mod keyring;
mod lzw;
pub mod message;
pub(crate) mod mp;
mod packet;
mod serf;
mod stream;

pub use codec::{
    decode_message, encode_message, encode_message_into, MAX_PUSH_PULL_NODES, MAX_STREAM_BYTES,
};
pub use error::WireError;
pub use keyring::{Keyring, ENCRYPTION_OVERHEAD, ENCRYPTION_OVERHEAD_V0, NONCE_SIZE, TAG_SIZE};
pub use lzw::{lzw_compress, lzw_decompress};
pub use message::*;
pub use packet::{
    decode_packet, encode_compound, encode_compress, encode_packet, DecodedPacket, PacketOptions,
    COMPOUND_HEADER_OVERHEAD, COMPOUND_PART_OVERHEAD, CRC_OVERHEAD, MAX_COMPOUND_PARTS,
    MAX_NESTING, MAX_PACKET_DECOMPRESSED, MAX_PACKET_SIZE, UDP_BUFFER_SIZE,
};
pub use serf::{
    decode_conflict_response, decode_key_request, decode_key_response, decode_query_filter,
    decode_serf_message, decode_tags, encode_conflict_response, encode_key_request,
    encode_key_response, encode_query_filter, encode_serf_message, encode_serf_message_into,
    encode_tags, encode_user_message, QueryFilter, FILTER_NODES, FILTER_TAG, META_MAX_SIZE,
    TAG_MAGIC_BYTE,
};
pub use stream::{decode_stream, encode_stream, encode_stream_message, MAX_STREAM_DECOMPRESSED};
