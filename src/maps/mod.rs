//! HAProxy maps kept by the agent: cluster facts for the request path without a round trip.
//!
//! haproxy.cfg declares a map file with the `map` converter (for example
//! `%[var(txn.haserf_slot),map(/var/lib/haproxy/haserf/served-by.map)]`); the agent keeps
//! its entries equal to the cluster (slot → member name, member → status, tags, one tag)
//! through the runtime API (`add map`, `set map`, `del map`), and rewrites the file
//! itself (temp file + rename) so that a reloaded or restarted HAProxy, which re-reads the
//! file, starts with the same entries. No Lua, no agent connection per request, no buffer
//! limit; it works under `chroot` (map files are read before HAProxy chroots) and keeps
//! answering while the agent is down.
//!
//! - [`content`]: what a map should hold (pure: slots and members in, entries out).
//! - [`show`]: the parser of `show map <file>`.
//! - [`planner`]: desired vs observed entries → runtime commands (pure).
//! - [`file`]: the map file's text and its atomic write.
//! - [`sync`]: the thin driver task next to the slot reconciler.

pub mod content;
pub mod file;
pub mod planner;
pub mod show;
pub mod sync;

use std::fmt;
use std::path::PathBuf;

pub use content::{desired_entries, Entries};
pub use planner::{plan_map, MapCommand};
pub use sync::{spawn_map_sync, MapStatus, MapSyncConfig, MapSyncHandle};

/// What a map holds. The key and value formats are part of the interface users write
/// haproxy.cfg rules against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapKind {
    /// `served-by`: key `<backend>/<slot>` (e.g. `web/web3`) → the member name in that slot.
    /// Every slot holding a member (serving or draining) has an entry; free slots have none.
    /// The backend is part of the key, so two backends with the same server names never
    /// collide.
    ServedBy,
    /// `member-status`: key member name → `alive`, `leaving`, `left` or `failed` (Serf's
    /// names), for every member the agent knows (the agent itself included).
    MemberStatus,
    /// `member-tags`: key member name → its tags as `k=v,k=v` sorted by key (the format of
    /// the SPOE variable `node_tags`); members without tags have no entry.
    MemberTags,
    /// `tag:<NAME>`: key member name → the value of that member's tag NAME; members without
    /// the tag have no entry.
    Tag(String),
}

impl MapKind {
    /// Parses `served-by`, `member-status`, `member-tags` or `tag:NAME`.
    pub fn parse(s: &str) -> Result<MapKind, String> {
        match s {
            "served-by" => Ok(MapKind::ServedBy),
            "member-status" => Ok(MapKind::MemberStatus),
            "member-tags" => Ok(MapKind::MemberTags),
            _ => match s.strip_prefix("tag:") {
                Some(t) if !t.is_empty() && content::check_key(t).is_ok() => {
                    Ok(MapKind::Tag(t.to_string()))
                }
                _ => Err(format!(
                    "unknown map kind {s:?}: expected served-by, member-status, member-tags or tag:NAME"
                )),
            },
        }
    }
}

impl fmt::Display for MapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapKind::ServedBy => f.write_str("served-by"),
            MapKind::MemberStatus => f.write_str("member-status"),
            MapKind::MemberTags => f.write_str("member-tags"),
            MapKind::Tag(t) => write!(f, "tag:{t}"),
        }
    }
}

/// One map the agent keeps: `--haproxy-map KIND=PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSpec {
    /// What it holds.
    pub kind: MapKind,
    /// The file, exactly as haproxy.cfg names it in `map(<file>)`: HAProxy identifies a map
    /// by that string, and the agent also rewrites the file there.
    pub path: PathBuf,
}

impl MapSpec {
    /// Parses `KIND=PATH` (e.g. `served-by=/var/lib/haproxy/haserf/served-by.map`). The
    /// path must be absolute (HAProxy resolves relative names against its working
    /// directory, the agent against its own) and printable without spaces or `;`.
    pub fn parse(s: &str) -> Result<MapSpec, String> {
        let (kind, path) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not KIND=PATH"))?;
        let kind = MapKind::parse(kind)?;
        if !path.starts_with('/') {
            return Err(format!("map file {path:?} must be an absolute path"));
        }
        content::check_key(path).map_err(|e| format!("map file {path:?}: {e}"))?;
        Ok(MapSpec {
            kind,
            path: PathBuf::from(path),
        })
    }

    /// Parses a list of specs and refuses the same file twice.
    pub fn parse_all(specs: &[String]) -> Result<Vec<MapSpec>, String> {
        let mut out: Vec<MapSpec> = Vec::new();
        for s in specs {
            let spec = MapSpec::parse(s)?;
            if out.iter().any(|o| o.path == spec.path) {
                return Err(format!("map file {} given twice", spec.path.display()));
            }
            out.push(spec);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_prints_back() {
        for k in ["served-by", "member-status", "member-tags", "tag:zone"] {
            assert_eq!(MapKind::parse(k).unwrap().to_string(), k);
        }
        assert!(MapKind::parse("tag:").is_err());
        assert!(MapKind::parse("slots").is_err());
    }

    #[test]
    fn a_spec_needs_an_absolute_path_and_a_known_kind() {
        let s = MapSpec::parse("served-by=/var/lib/haproxy/haserf/served-by.map").unwrap();
        assert_eq!(s.kind, MapKind::ServedBy);
        assert!(MapSpec::parse("served-by=relative.map").is_err());
        assert!(MapSpec::parse("/abs.map").is_err());
        assert!(MapSpec::parse("served-by=/a b.map").is_err());
        assert!(MapSpec::parse("nope=/a.map").is_err());
    }

    #[test]
    fn the_same_file_twice_is_refused() {
        let specs = ["served-by=/m/a.map".to_string(), "tag:zone=/m/a.map".into()];
        assert!(MapSpec::parse_all(&specs).is_err());
    }
}
