//! `haserf keygen`: a fresh gossip encryption key, as `serf keygen` prints it.

use base64::Engine as _;
use rand::RngCore as _;

/// Length of the keys we generate: 32 bytes selects AES-256-GCM, like `serf keygen`.
pub const KEY_LEN: usize = 32;

/// Returns a new random 32-byte key, base64 (standard alphabet, padded).
pub fn generate() -> String {
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_decodes_to_32_bytes() {
        let key = generate();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&key)
            .expect("base64");
        assert_eq!(raw.len(), KEY_LEN);
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(generate(), generate());
    }
}
