//! Desired vs observed entries of one map → the smallest list of runtime commands that
//! makes HAProxy's copy equal to the desired one. Pure.
//!
//! `add map` appends even when the key exists (HAProxy then holds the key twice and
//! lookups use the first), so an existing key is changed with `set map` (which updates
//! every copy), and a key found more than once is deleted (`del map` removes every copy)
//! and added again.

use std::collections::BTreeMap;
use std::fmt;

use super::content::Entries;

/// One runtime command on a map (the map file is given when the line is rendered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapCommand {
    /// `add map <file> <key> <value>`: a key HAProxy does not have.
    Add {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `set map <file> <key> <value>`: a key HAProxy has with another value.
    Set {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `del map <file> <key>`: a key that should not be there (or is there twice).
    Del {
        /// Key.
        key: String,
    },
}

/// Escapes a value for one runtime command line: a space becomes `\ ` (HAProxy splits
/// arguments on spaces). Values never hold `;`, `\` or control characters
/// ([`super::content::check_value`]).
fn escape(v: &str) -> String {
    v.replace(' ', "\\ ")
}

impl MapCommand {
    /// The command line for map `file`.
    pub fn line(&self, file: &str) -> String {
        match self {
            MapCommand::Add { key, value } => format!("add map {file} {key} {}", escape(value)),
            MapCommand::Set { key, value } => format!("set map {file} {key} {}", escape(value)),
            MapCommand::Del { key } => format!("del map {file} {key}"),
        }
    }

    /// HAProxy's reply to this command: success is an empty reply; `Key not found.` to a
    /// `del` means the entry is already gone, which is what was wanted.
    pub fn classify(&self, reply: &str) -> Result<(), String> {
        let text = crate::haproxy::command::strip_severity(reply).trim();
        if text.is_empty() || (matches!(self, MapCommand::Del { .. }) && text == "Key not found.") {
            Ok(())
        } else {
            Err(text.to_string())
        }
    }
}

impl fmt::Display for MapCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapCommand::Add { key, value } => write!(f, "add {key} {value:?}"),
            MapCommand::Set { key, value } => write!(f, "set {key} {value:?}"),
            MapCommand::Del { key } => write!(f, "del {key}"),
        }
    }
}

/// The commands that turn `observed` (HAProxy's entries in its order, duplicates kept)
/// into `desired`: deletions first, then changes, then additions, each in key order.
pub fn plan_map(desired: &Entries, observed: &[(String, String)]) -> Vec<MapCommand> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in observed {
        seen.entry(k.as_str()).or_default().push(v.as_str());
    }
    let (mut dels, mut sets, mut adds) = (Vec::new(), Vec::new(), Vec::new());
    for (k, values) in &seen {
        match desired.get(*k) {
            None => dels.push(MapCommand::Del { key: k.to_string() }),
            Some(want) if values.len() > 1 => {
                dels.push(MapCommand::Del { key: k.to_string() });
                adds.push(MapCommand::Add {
                    key: k.to_string(),
                    value: want.clone(),
                });
            }
            Some(want) if values[0] != want => sets.push(MapCommand::Set {
                key: k.to_string(),
                value: want.clone(),
            }),
            Some(_) => {}
        }
    }
    for (k, v) in desired {
        if !seen.contains_key(k.as_str()) {
            adds.push(MapCommand::Add {
                key: k.clone(),
                value: v.clone(),
            });
        }
    }
    adds.sort_by_key(|a| a.line(""));
    dels.extend(sets);
    dels.extend(adds);
    dels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(kv: &[(&str, &str)]) -> Entries {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn observed(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equal_maps_need_nothing() {
        let d = entries(&[("web/web1", "a"), ("web/web2", "b")]);
        assert!(plan_map(&d, &observed(&[("web/web2", "b"), ("web/web1", "a")])).is_empty());
    }

    #[test]
    fn missing_keys_are_added_changed_ones_set_and_extra_ones_deleted() {
        let d = entries(&[("web/web1", "a"), ("web/web2", "b"), ("web/web3", "c")]);
        let o = observed(&[("web/web1", "a"), ("web/web2", "old"), ("web/web9", "z")]);
        let lines: Vec<String> = plan_map(&d, &o).iter().map(|c| c.line("/m")).collect();
        assert_eq!(
            lines,
            [
                "del map /m web/web9",
                "set map /m web/web2 b",
                "add map /m web/web3 c"
            ]
        );
    }

    #[test]
    fn a_key_held_twice_is_deleted_and_added_once() {
        let d = entries(&[("k", "v")]);
        let o = observed(&[("k", "v"), ("k", "v")]);
        let lines: Vec<String> = plan_map(&d, &o).iter().map(|c| c.line("/m")).collect();
        assert_eq!(lines, ["del map /m k", "add map /m k v"]);
    }

    #[test]
    fn spaces_in_values_are_escaped_on_the_command_line() {
        let d = entries(&[("k", "two words")]);
        assert_eq!(plan_map(&d, &[])[0].line("/m"), "add map /m k two\\ words");
    }

    #[test]
    fn replies_are_classified() {
        let del = MapCommand::Del { key: "k".into() };
        assert_eq!(del.classify(""), Ok(()));
        assert_eq!(del.classify("Key not found.\n"), Ok(()));
        let set = MapCommand::Set {
            key: "k".into(),
            value: "v".into(),
        };
        assert_eq!(
            set.classify("entry not found.\n"),
            Err("entry not found.".into())
        );
        assert!(set.classify("Permission denied\n").is_err());
    }
}
