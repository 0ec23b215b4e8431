//! The encryption keyring and memberlist's AES-GCM payload format (gossip-wire.md §6):
//! `vsn:u8 | nonce:12 | ciphertext | tag:16`, version 1 (no padding) on output, versions
//! 0 (PKCS#7-style padding) and 1 on input, every key tried in order.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine as _;
use rand::RngCore;

use super::error::{Result, WireError};

type Aes192Gcm = AesGcm<Aes192, U12>;

/// Nonce length.
pub const NONCE_SIZE: usize = 12;
/// GCM tag length.
pub const TAG_SIZE: usize = 16;
/// Bytes encryption version 1 adds to a payload (1 + 12 + 16 = 29).
pub const ENCRYPTION_OVERHEAD: usize = 1 + NONCE_SIZE + TAG_SIZE;
/// Maximum bytes encryption version 0 adds (45).
pub const ENCRYPTION_OVERHEAD_V0: usize = ENCRYPTION_OVERHEAD + 16;

#[derive(Clone)]
enum Cipher {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

impl Cipher {
    fn new(key: &[u8]) -> Result<Cipher> {
        let bad = |_| WireError::BadKeySize(key.len());
        Ok(match key.len() {
            16 => Cipher::A128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?)),
            24 => Cipher::A192(Box::new(Aes192Gcm::new_from_slice(key).map_err(bad)?)),
            32 => Cipher::A256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?)),
            n => return Err(WireError::BadKeySize(n)),
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_SIZE], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let n = Nonce::from_slice(nonce);
        let p = Payload { msg, aad };
        match self {
            Cipher::A128(c) => c.encrypt(n, p),
            Cipher::A192(c) => c.encrypt(n, p),
            Cipher::A256(c) => c.encrypt(n, p),
        }
        .map_err(|_| WireError::EncryptFailed)
    }

    fn open(&self, nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let n = Nonce::from_slice(nonce);
        let p = Payload { msg: ct, aad };
        match self {
            Cipher::A128(c) => c.decrypt(n, p),
            Cipher::A192(c) => c.decrypt(n, p),
            Cipher::A256(c) => c.decrypt(n, p),
        }
        .ok()
    }
}

/// An ordered set of AES keys (16, 24 or 32 bytes); index 0 is the primary key, used to
/// encrypt. Decryption tries every key in order. `Debug` never prints key material.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Vec<u8>>,
    ciphers: Vec<Cipher>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

fn decode_b64(s: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| WireError::BadBase64)
}

fn encode_b64(k: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(k)
}

impl Keyring {
    /// A keyring holding only `primary`.
    pub fn new(primary: Vec<u8>) -> Result<Self> {
        let c = Cipher::new(&primary)?;
        Ok(Keyring {
            keys: vec![primary],
            ciphers: vec![c],
        })
    }

    /// From base64 keys (as given to `serf agent -encrypt=`); the first is primary.
    pub fn from_base64(keys: &[String]) -> Result<Self> {
        let mut it = keys.iter();
        let first = it.next().ok_or(WireError::Keyring("no keys given"))?;
        let mut ring = Keyring::new(decode_b64(first)?)?;
        for k in it {
            ring.install(decode_b64(k)?)?;
        }
        Ok(ring)
    }

    /// From a Serf keyring file: a JSON list of base64 keys, the first is primary.
    pub fn from_file(path: &Path) -> Result<Self> {
        let err = |reason: String| WireError::KeyringFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let keys: Vec<String> =
            serde_json::from_str(&text).map_err(|e| err(format!("not a JSON list: {e}")))?;
        Self::from_base64(&keys).map_err(|e| err(e.to_string()))
    }

    /// Add a key (not primary). Installing a key already present is a no-op.
    pub fn install(&mut self, key: Vec<u8>) -> Result<()> {
        let c = Cipher::new(&key)?;
        if !self.keys.contains(&key) {
            self.keys.push(key);
            self.ciphers.push(c);
        }
        Ok(())
    }

    /// Make an installed key the primary one.
    pub fn use_key(&mut self, key: &[u8]) -> Result<()> {
        Cipher::new(key)?;
        let i = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or(WireError::Keyring("requested key is not in the keyring"))?;
        let k = self.keys.remove(i);
        let c = self.ciphers.remove(i);
        self.keys.insert(0, k);
        self.ciphers.insert(0, c);
        Ok(())
    }

    /// Remove a non-primary key (removing a key that is absent is a no-op, like Serf).
    pub fn remove(&mut self, key: &[u8]) -> Result<()> {
        Cipher::new(key)?;
        if self.keys[0] == key {
            return Err(WireError::Keyring(
                "removing the primary key is not allowed",
            ));
        }
        if let Some(i) = self.keys.iter().position(|k| k == key) {
            self.keys.remove(i);
            self.ciphers.remove(i);
        }
        Ok(())
    }

    /// The primary key.
    pub fn primary(&self) -> &[u8] {
        &self.keys[0]
    }

    /// All keys, primary first.
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }

    /// All keys as base64, primary first.
    pub fn list_base64(&self) -> Vec<String> {
        self.keys.iter().map(|k| encode_b64(k)).collect()
    }

    /// The primary key as base64.
    pub fn primary_base64(&self) -> String {
        encode_b64(&self.keys[0])
    }

    /// Seal `plain` with the primary key, encryption version 1, a random nonce, and
    /// `aad` as additional data: `01 | nonce | ciphertext | tag`.
    pub fn encrypt(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_SIZE];
        rand::thread_rng().fill_bytes(&mut nonce);
        self.encrypt_with_nonce(1, &nonce, plain, aad)
    }

    /// Seal with an explicit version (0 pads, 1 does not) and nonce (tests, interop).
    pub fn encrypt_with_nonce(
        &self,
        vsn: u8,
        nonce: &[u8; NONCE_SIZE],
        plain: &[u8],
        aad: &[u8],
    ) -> Vec<u8> {
        let mut padded;
        let msg = if vsn == 0 {
            let pad = 16 - (plain.len() % 16);
            padded = Vec::with_capacity(plain.len() + pad);
            padded.extend_from_slice(plain);
            padded.resize(plain.len() + pad, pad as u8);
            &padded[..]
        } else {
            plain
        };
        let ct = self.ciphers[0]
            .seal(nonce, msg, aad)
            .expect("AES-GCM seal with a valid key cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_SIZE + ct.len());
        out.push(vsn);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open `vsn | nonce | ciphertext | tag` trying every key in order. Returns the
    /// plaintext and the index of the key that opened it.
    pub fn decrypt(&self, msg: &[u8], aad: &[u8]) -> Result<(Vec<u8>, usize)> {
        let (&vsn, _) = msg.split_first().ok_or(WireError::Truncated)?;
        let min = match vsn {
            0 => ENCRYPTION_OVERHEAD_V0,
            1 => ENCRYPTION_OVERHEAD,
            v => return Err(WireError::UnsupportedEncryptionVersion(v)),
        };
        if msg.len() < min {
            return Err(WireError::Truncated);
        }
        let nonce = &msg[1..1 + NONCE_SIZE];
        let ct = &msg[1 + NONCE_SIZE..];
        for (i, c) in self.ciphers.iter().enumerate() {
            if let Some(mut plain) = c.open(nonce, ct, aad) {
                if vsn == 0 {
                    let pad = *plain.last().ok_or(WireError::NoKeyDecrypts)? as usize;
                    if pad == 0 || pad > 16 || pad > plain.len() {
                        return Err(WireError::BadMsgpack {
                            field: "encryption padding",
                            reason: "bad PKCS#7 padding",
                        });
                    }
                    plain.truncate(plain.len() - pad);
                }
                return Ok((plain, i));
            }
        }
        Err(WireError::NoKeyDecrypts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8, n: usize) -> Vec<u8> {
        vec![b; n]
    }

    #[test]
    fn keys_of_16_24_and_32_bytes_are_accepted_and_others_refused() {
        for n in [16, 24, 32] {
            let r = Keyring::new(k(1, n)).unwrap();
            let sealed = r.encrypt(b"hello", b"");
            assert_eq!(sealed.len(), 5 + ENCRYPTION_OVERHEAD);
            assert_eq!(r.decrypt(&sealed, b"").unwrap(), (b"hello".to_vec(), 0));
        }
        assert_eq!(
            Keyring::new(k(1, 15)).unwrap_err(),
            WireError::BadKeySize(15)
        );
    }

    #[test]
    fn version_zero_payloads_are_padded_and_unpadded() {
        let r = Keyring::new(k(2, 32)).unwrap();
        let sealed = r.encrypt_with_nonce(0, &[7; 12], b"0123456789abcdef", b"");
        assert_eq!(sealed.len(), 16 + ENCRYPTION_OVERHEAD_V0);
        assert_eq!(r.decrypt(&sealed, b"").unwrap().0, b"0123456789abcdef");
    }

    #[test]
    fn rotation_installs_uses_and_removes_keys_but_never_the_primary() {
        let mut r = Keyring::new(k(1, 32)).unwrap();
        r.install(k(2, 32)).unwrap();
        assert_eq!(r.keys().len(), 2);
        let old = r.encrypt(b"x", b"");
        r.use_key(&k(2, 32)).unwrap();
        assert_eq!(r.primary(), &k(2, 32)[..]);
        assert_eq!(r.decrypt(&old, b"").unwrap().1, 1);
        assert!(r.remove(&k(2, 32)).is_err());
        r.remove(&k(1, 32)).unwrap();
        assert_eq!(r.decrypt(&old, b"").unwrap_err(), WireError::NoKeyDecrypts);
        assert!(r.use_key(&k(3, 32)).is_err());
    }

    #[test]
    fn a_keyring_file_is_a_json_list_of_base64_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keyring");
        std::fs::write(
            &p,
            r#"["HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo=","jNb35vJhG93RkCNQ9luvcq6KWcoJPy6MO0whx1TIjuo="]"#,
        )
        .unwrap();
        let r = Keyring::from_file(&p).unwrap();
        assert_eq!(r.keys().len(), 2);
        assert_eq!(
            r.list_base64()[0],
            "HkSArVJVtZYS4IAI5ZVM4iZNmiH61RjXbp6C9C40XZo="
        );
        std::fs::write(&p, "not json").unwrap();
        assert_eq!(Keyring::from_file(&p).unwrap_err().kind(), "keyring_file");
    }
}
