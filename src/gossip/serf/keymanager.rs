//! The key manager's answering side (Serf `keymanager.go` and the `_serf_*-key` internal
//! queries behind `serf keys`): install, use, remove and list the gossip encryption keys,
//! rewriting the keyring file after every change.

use std::path::Path;

use crate::gossip::runtime::Runtime;
use crate::gossip::wire::{decode_key_request, encode_key_response, KeyResponse};

/// Answers the key query `name` (`_serf_install-key`, `_serf_use-key`, `_serf_remove-key`,
/// `_serf_list-keys`) with an encoded key response; a change of the keyring is written to
/// `keyring_file` (when set) and reported to the driver.
pub(crate) fn answer(
    name: &str,
    payload: &[u8],
    keyring_file: Option<&Path>,
    rt: &mut Runtime,
) -> Vec<u8> {
    let mut resp = KeyResponse {
        result: false,
        message: String::new(),
        keys: None,
        primary_key: String::new(),
    };
    let Some(ring) = rt.keyring_mut() else {
        resp.message = if name == "_serf_list-keys" {
            "Keyring is empty (encryption not enabled)".into()
        } else {
            "No keyring to modify (encryption not enabled)".into()
        };
        return encode_key_response(&resp);
    };
    let req = match decode_key_request(payload) {
        Ok(r) => r,
        Err(e) => {
            resp.message = format!("Failed to decode key request: {e}");
            return encode_key_response(&resp);
        }
    };
    let res = match name {
        "_serf_install-key" => ring.install(req.key.clone()).map_err(|e| e.to_string()),
        "_serf_use-key" => ring.use_key(&req.key).map_err(|e| e.to_string()),
        "_serf_remove-key" => ring.remove(&req.key).map_err(|e| e.to_string()),
        _ => {
            let keys = ring.list_base64();
            resp.primary_key = keys.first().cloned().unwrap_or_default();
            resp.keys = Some(keys);
            resp.result = true;
            return encode_key_response(&resp);
        }
    };
    match res {
        Ok(()) => {
            resp.result = true;
            rt.keyring_changed();
            if let Err(e) = write_keyring_file(keyring_file, rt) {
                resp.result = false;
                resp.message = e;
            }
        }
        Err(e) => resp.message = e,
    }
    encode_key_response(&resp)
}

/// Serf's keyring file: a JSON list of base64 keys, primary first.
fn write_keyring_file(path: Option<&Path>, rt: &Runtime) -> Result<(), String> {
    let (Some(path), Some(ring)) = (path, rt.keyring()) else {
        return Ok(());
    };
    let json = serde_json::to_string(&ring.list_base64()).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| format!("failed to write keyring file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::config::GossipConfig;
    use crate::gossip::wire::{decode_key_response, encode_key_request, KeyRequest, Keyring};
    use std::net::SocketAddr;

    fn keyed_runtime() -> Runtime {
        let mut cfg = GossipConfig::new("t", SocketAddr::from(([10, 0, 0, 1], 7946)));
        cfg.keyring = Some(Keyring::new(vec![1; 16]).unwrap());
        Runtime::new(&cfg, 1)
    }

    fn req(key: &[u8]) -> Vec<u8> {
        encode_key_request(&KeyRequest { key: key.to_vec() })
    }

    #[test]
    fn installing_using_and_removing_a_key_change_the_keyring_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyring");
        let mut rt = keyed_runtime();
        let r = decode_key_response(&answer(
            "_serf_install-key",
            &req(&[2; 16]),
            Some(&file),
            &mut rt,
        ))
        .unwrap();
        assert!(r.result, "{}", r.message);
        assert!(rt.take_keyring_changed());
        let r = decode_key_response(&answer(
            "_serf_use-key",
            &req(&[2; 16]),
            Some(&file),
            &mut rt,
        ))
        .unwrap();
        assert!(r.result);
        let r = decode_key_response(&answer(
            "_serf_remove-key",
            &req(&[1; 16]),
            Some(&file),
            &mut rt,
        ))
        .unwrap();
        assert!(r.result);
        let r = decode_key_response(&answer("_serf_list-keys", &req(&[]), Some(&file), &mut rt))
            .unwrap();
        assert_eq!(r.keys.as_ref().map(Vec::len), Some(1));
        let written: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(written, r.keys.unwrap());
        assert_eq!(written[0], r.primary_key);
    }

    #[test]
    fn refused_key_changes_say_why_and_change_nothing() {
        let mut rt = keyed_runtime();
        let r = decode_key_response(&answer("_serf_remove-key", &req(&[1; 16]), None, &mut rt))
            .unwrap();
        assert!(
            !r.result && !r.message.is_empty(),
            "the primary key cannot be removed"
        );
        assert!(!rt.take_keyring_changed());
        let r = decode_key_response(&answer("_serf_use-key", &[0xc1], None, &mut rt)).unwrap();
        assert!(
            r.message.starts_with("Failed to decode key request"),
            "{}",
            r.message
        );
    }

    #[test]
    fn without_encryption_there_is_no_keyring_to_manage() {
        let mut rt = crate::gossip::runtime::testing::runtime();
        let r = decode_key_response(&answer("_serf_list-keys", &[], None, &mut rt)).unwrap();
        assert_eq!(r.message, "Keyring is empty (encryption not enabled)");
        let r = decode_key_response(&answer("_serf_install-key", &req(&[2; 16]), None, &mut rt))
            .unwrap();
        assert_eq!(r.message, "No keyring to modify (encryption not enabled)");
    }
}
