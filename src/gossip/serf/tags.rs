//! Serf tags in memberlist's node meta (Serf `encodeTags` / `decodeTags`): `0xff` then a
//! msgpack map, at most 512 bytes; a meta without the magic byte is the legacy `role`.

use std::collections::BTreeMap;

use crate::gossip::error::GossipError;
use crate::gossip::wire::{decode_tags, encode_tags, WireError, META_MAX_SIZE};

/// Encodes tags the way Serf does (`0xff` + msgpack map), enforcing the 512-byte limit.
pub fn encode_meta(tags: &BTreeMap<String, String>) -> Result<Vec<u8>, GossipError> {
    match encode_tags(tags) {
        Ok(meta) => Ok(meta),
        Err(WireError::MetaTooLarge(size)) => Err(GossipError::TagsTooLarge {
            size,
            limit: META_MAX_SIZE,
        }),
        Err(e) => Err(GossipError::Config(e.to_string())),
    }
}

/// Decodes Serf tags from memberlist `Meta` (legacy: the whole meta is the `role` tag);
/// undecodable tags are none.
pub fn decode_meta(meta: &[u8]) -> BTreeMap<String, String> {
    if meta.first() == Some(&0xff) {
        decode_tags(meta).unwrap_or_default()
    } else if meta.is_empty() {
        BTreeMap::new()
    } else {
        let mut m = BTreeMap::new();
        m.insert("role".into(), String::from_utf8_lossy(meta).to_string());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_over_serfs_meta_limit_are_refused_with_a_clear_error() {
        let mut tags = BTreeMap::new();
        tags.insert("big".to_string(), "x".repeat(600));
        let err = encode_meta(&tags).unwrap_err();
        assert!(
            matches!(err, GossipError::TagsTooLarge { limit: 512, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("512"));
    }

    #[test]
    fn tags_round_trip_and_a_legacy_meta_is_the_role() {
        let tags = BTreeMap::from([("role".to_string(), "web".to_string())]);
        assert_eq!(decode_meta(&encode_meta(&tags).unwrap()), tags);
        assert_eq!(decode_meta(b"web"), tags);
        assert!(decode_meta(b"").is_empty());
        assert!(
            decode_meta(&[0xff, 0x01]).is_empty(),
            "undecodable: no tags"
        );
    }
}
