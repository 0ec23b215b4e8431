//! Errors of the wire codec. Every variant means "this input was dropped"; none of the
//! codec functions keep state, so an error never leaves anything half-applied.

/// Why bytes could not be decoded (or a value could not be encoded).
///
/// [`WireError::kind`] gives a stable snake_case label for drop counters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended before the value was complete. On streams this means "need more
    /// bytes" ([`super::decode_stream`] turns it into `Ok(None)` where more can come).
    #[error("truncated input (need more bytes)")]
    Truncated,
    /// The type byte names no message this layer knows.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// A known message type that is not allowed where it appeared (e.g. push/pull in a
    /// UDP packet, a compound passed to `decode_message`, a CRC header inside a compound).
    #[error("message type {0} not allowed here")]
    UnexpectedMessageType(u8),
    /// The msgpack is malformed or a value is out of range for its field.
    #[error("bad msgpack in field {field}: {reason}")]
    BadMsgpack {
        /// Go field name (or a structure name).
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A msgpack value of the wrong family for its field.
    #[error("wrong msgpack type 0x{marker:02x} for field {field} (expected {expected})")]
    WrongType {
        /// Go field name (or a structure name).
        field: &'static str,
        /// What the field accepts.
        expected: &'static str,
        /// The msgpack marker byte found.
        marker: u8,
    },
    /// A field without which the message means nothing (e.g. an alive without `Addr`).
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// The CRC header does not match the rest of the packet.
    #[error("bad CRC: header says {expected:08x}, payload has {actual:08x}")]
    BadCrc {
        /// CRC in the header.
        expected: u32,
        /// CRC computed over the payload.
        actual: u32,
    },
    /// No key of the keyring authenticated the ciphertext.
    #[error("no installed key could decrypt the message")]
    NoKeyDecrypts,
    /// A plaintext packet or stream reached a node that has encryption enabled.
    #[error("plaintext message received but encryption is enabled")]
    PlaintextOnEncrypted,
    /// An encrypted packet or stream reached a node without a keyring.
    #[error("encrypted message received but no keyring is configured")]
    EncryptedWithoutKeyring,
    /// Encryption version byte other than 0 or 1.
    #[error("unsupported encryption version {0}")]
    UnsupportedEncryptionVersion(u8),
    /// Compression algorithm other than 0 (LZW).
    #[error("unsupported compression algorithm {0}")]
    UnsupportedCompression(u64),
    /// The LZW data is corrupt.
    #[error("bad LZW data: {0}")]
    BadLzw(&'static str),
    /// A length exceeds a limit.
    #[error("{what} too large: {len} > {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Announced or produced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Encoded tags (`Meta`) exceed 512 bytes.
    #[error("encoded tags are {0} bytes, more than the 512 allowed")]
    MetaTooLarge(usize),
    /// An encryption key that is not 16, 24 or 32 bytes.
    #[error("bad key size {0} (must be 16, 24 or 32 bytes)")]
    BadKeySize(usize),
    /// A key that is not valid base64.
    #[error("key is not valid base64")]
    BadBase64,
    /// Keyring operation refused (removing the primary key, using an unknown key, ...).
    #[error("keyring: {0}")]
    Keyring(&'static str),
    /// A keyring file could not be read or parsed.
    #[error("keyring file {path}: {reason}")]
    KeyringFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Sealing failed (cannot happen with valid keys; kept for completeness).
    #[error("encryption failed")]
    EncryptFailed,
    /// Nesting of compress/compound containers deeper than allowed.
    #[error("containers nested too deeply")]
    TooDeep,
    /// A label header that is empty or cut short.
    #[error("bad label header")]
    BadLabel,
}

impl WireError {
    /// A stable snake_case label for this error kind, used as a drop-counter name.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::UnknownMessageType(_) => "unknown_message_type",
            WireError::UnexpectedMessageType(_) => "unexpected_message_type",
            WireError::BadMsgpack { .. } => "bad_msgpack",
            WireError::WrongType { .. } => "wrong_msgpack_type",
            WireError::MissingField(_) => "missing_field",
            WireError::BadCrc { .. } => "bad_crc",
            WireError::NoKeyDecrypts => "no_key_decrypts",
            WireError::PlaintextOnEncrypted => "plaintext_on_encrypted",
            WireError::EncryptedWithoutKeyring => "encrypted_without_keyring",
            WireError::UnsupportedEncryptionVersion(_) => "unsupported_encryption_version",
            WireError::UnsupportedCompression(_) => "unsupported_compression",
            WireError::BadLzw(_) => "bad_lzw",
            WireError::TooLarge { .. } => "too_large",
            WireError::MetaTooLarge(_) => "meta_too_large",
            WireError::BadKeySize(_) => "bad_key_size",
            WireError::BadBase64 => "bad_base64",
            WireError::Keyring(_) => "keyring",
            WireError::KeyringFile { .. } => "keyring_file",
            WireError::EncryptFailed => "encrypt_failed",
            WireError::TooDeep => "too_deep",
            WireError::BadLabel => "bad_label",
        }
    }
}

/// Result alias of the wire codec.
pub type Result<T> = std::result::Result<T, WireError>;
