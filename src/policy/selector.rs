//! `--backend NAME[=KEY=VALUE,...]`: which members fill which backend's slots.

use std::collections::BTreeMap;
use std::fmt;

/// A backend and the tags a member needs to get one of its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSelector {
    /// HAProxy backend name.
    pub backend: String,
    /// Every tag must match exactly. Default: `role=<backend>`.
    pub tags: BTreeMap<String, String>,
}

/// A `--backend` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --backend {value:?}: {reason} (expected NAME or NAME=KEY=VALUE,...)")]
pub struct SelectorError {
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl BackendSelector {
    /// Parses `NAME` or `NAME=KEY=VALUE[,KEY=VALUE...]`.
    pub fn parse(value: &str) -> Result<Self, SelectorError> {
        let err = |reason| SelectorError {
            value: value.to_string(),
            reason,
        };
        let (backend, rest) = match value.split_once('=') {
            Some((name, rest)) => (name, Some(rest)),
            None => (value, None),
        };
        if backend.is_empty() {
            return Err(err("empty backend name"));
        }
        if !backend
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(err("backend names use letters, digits, '-', '_', '.', ':'"));
        }
        let mut tags = BTreeMap::new();
        match rest {
            None => {
                tags.insert("role".to_string(), backend.to_string());
            }
            Some(rest) => {
                for pair in rest.split(',') {
                    let (key, val) = pair
                        .split_once('=')
                        .ok_or_else(|| err("a selector is KEY=VALUE"))?;
                    if key.is_empty() {
                        return Err(err("empty tag name in selector"));
                    }
                    if tags.insert(key.to_string(), val.to_string()).is_some() {
                        return Err(err("tag named twice in selector"));
                    }
                }
            }
        }
        Ok(BackendSelector {
            backend: backend.to_string(),
            tags,
        })
    }

    /// True when the member has every selector tag with the same value.
    pub fn matches(&self, member_tags: &BTreeMap<String, String>) -> bool {
        self.tags
            .iter()
            .all(|(k, v)| member_tags.get(k).is_some_and(|have| have == v))
    }
}

impl fmt::Display for BackendSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(f, "{}={}", self.backend, tags.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_bare_name_selects_role_equal_to_the_name() {
        let s = BackendSelector::parse("web").unwrap();
        assert_eq!(s.tags, tags(&[("role", "web")]));
        assert!(s.matches(&tags(&[("role", "web"), ("port", "3000")])));
        assert!(!s.matches(&tags(&[("role", "db")])));
        assert!(!s.matches(&tags(&[])));
    }

    #[test]
    fn every_listed_tag_must_match() {
        let s = BackendSelector::parse("api=role=web,dc=east").unwrap();
        assert_eq!(s.backend, "api");
        assert!(s.matches(&tags(&[("role", "web"), ("dc", "east")])));
        assert!(!s.matches(&tags(&[("role", "web"), ("dc", "west")])));
        assert!(!s.matches(&tags(&[("role", "web")])));
    }

    #[test]
    fn malformed_selectors_are_rejected_with_the_value_named() {
        for bad in [
            "",
            "=role=web",
            "web=role",
            "web==x",
            "web=role=a,role=b",
            "we b",
        ] {
            let err = BackendSelector::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn an_empty_value_is_allowed_and_must_match_exactly() {
        let s = BackendSelector::parse("web=canary=").unwrap();
        assert!(s.matches(&tags(&[("canary", "")])));
        assert!(!s.matches(&tags(&[("canary", "1")])));
    }
}
