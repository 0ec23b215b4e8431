//! `haserf members` and `haserf slots` with filters.
//!
//! Members are filtered as `serf members` filters them (serf's agent `filterMembers`):
//! `--status`, `--name` and each `--tag KEY=VALUE` are regular expressions wrapped in
//! `^…$` by plain concatenation (so, as in serf, `a|b` becomes `^a|b$`); an empty `--status`
//! or `--name` does not filter; a tag the member lacks is matched as the empty string; a
//! suspected member's status is `alive`, as in serf. The regex crate's syntax is RE2's,
//! the same as Go's `regexp`.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;

use super::render::{self, Format};
use super::socket::request;
use crate::control::model::{MemberView, MembersReply, Request, SlotState, SlotView, SlotsReply};

/// Serf's member filters.
#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    status: Option<Regex>,
    name: Option<Regex>,
    tags: BTreeMap<String, Regex>,
}

fn anchored(flag: &str, expr: &str) -> Result<Regex, String> {
    Regex::new(&format!("^{expr}$")).map_err(|e| format!("{flag} {expr:?}: {e}"))
}

impl MemberFilter {
    /// Compiles the filters; `tags` are `KEY=REGEX` (a repeated key: the last wins, as in
    /// serf). Errors name the flag.
    pub fn new(status: Option<&str>, name: Option<&str>, tags: &[String]) -> Result<Self, String> {
        let mut f = MemberFilter::default();
        if let Some(s) = status.filter(|s| !s.is_empty()) {
            f.status = Some(anchored("--status", s)?);
        }
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            f.name = Some(anchored("--name", n)?);
        }
        for tag in tags {
            let (k, v) = tag
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("--tag {tag:?}: expected KEY=REGEX"))?;
            f.tags.insert(k.to_string(), anchored("--tag", v)?);
        }
        Ok(f)
    }

    /// True when `m` passes every filter.
    pub fn matches(&self, m: &MemberView) -> bool {
        self.tags
            .iter()
            .all(|(k, re)| re.is_match(m.tags.get(k).map_or("", String::as_str)))
            && self
                .status
                .as_ref()
                .is_none_or(|re| re.is_match(m.status.as_str()))
            && self.name.as_ref().is_none_or(|re| re.is_match(&m.name))
    }
}

/// Slot filters of `haserf slots`.
#[derive(Debug, Clone, Default)]
pub struct SlotFilter {
    /// Only slots holding a member.
    pub used: bool,
    /// Only slots in one of these states (empty: any).
    pub states: Vec<SlotState>,
}

impl SlotFilter {
    /// True when `s` passes.
    pub fn matches(&self, s: &SlotView) -> bool {
        (!self.used || s.member.is_some())
            && (self.states.is_empty() || self.states.contains(&s.state))
    }
}

/// `haserf members` or `haserf slots`, filtered.
#[derive(Debug, Clone)]
pub enum ListRequest {
    /// Members passing the filter.
    Members(MemberFilter),
    /// Slots passing the filter.
    Slots(SlotFilter),
}

/// Asks the agent at `socket`, keeps what passes the filter, prints it in `format`;
/// returns the exit status (0, or 1 with the error on stderr).
pub fn run(socket: &Path, list: &ListRequest, format: Format) -> i32 {
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(status) => return status,
    };
    let req = match list {
        ListRequest::Members(_) => Request::Members,
        ListRequest::Slots(_) => Request::Slots,
    };
    let reply = match runtime.block_on(request(socket, &req)) {
        Ok(reply) => reply,
        Err(err) => {
            eprintln!("haserf: {err}");
            return 1;
        }
    };
    let filtered = match list {
        ListRequest::Members(f) => serde_json::from_value::<MembersReply>(reply).map(|mut r| {
            r.members.retain(|m| f.matches(m));
            serde_json::to_value(r)
        }),
        ListRequest::Slots(f) => serde_json::from_value::<SlotsReply>(reply).map(|mut r| {
            r.slots.retain(|s| f.matches(s));
            serde_json::to_value(r)
        }),
    };
    match filtered {
        Ok(Ok(value)) => {
            print!("{}", render::reply(&req, &value, format));
            0
        }
        Ok(Err(e)) | Err(e) => {
            eprintln!("haserf: the agent's reply is not the expected shape: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::MemberStatus;

    fn member(name: &str, status: MemberStatus, tags: &[(&str, &str)]) -> MemberView {
        MemberView {
            name: name.into(),
            addr: "127.0.0.1".into(),
            port: 7946,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            status,
            suspect: false,
        }
    }

    #[test]
    fn filters_are_anchored_regular_expressions_as_in_serf() {
        let web1 = member("web1", MemberStatus::Alive, &[("role", "web")]);
        let f = |s: Option<&str>, n: Option<&str>, t: &[&str]| {
            let tags: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            MemberFilter::new(s, n, &tags).unwrap().matches(&web1)
        };
        assert!(f(None, None, &[]));
        assert!(f(Some("alive"), Some("web[0-9]+"), &["role=w.b"]));
        assert!(!f(None, Some("web"), &[]), "anchored at the end");
        assert!(!f(None, Some("eb1"), &[]), "anchored at the start");
        assert!(!f(Some("ali"), None, &[]));
        assert!(!f(None, None, &["role=db"]));
        assert!(
            f(None, None, &["zone="]),
            "a missing tag is the empty string"
        );
        assert!(!f(None, None, &["zone=.+"]));
        assert!(
            f(Some(""), Some(""), &[]),
            "empty status and name do not filter"
        );
        // serf concatenates: `x|web1` is `^x|web1$`, which matches
        assert!(f(None, Some("x|web1"), &[]));
    }

    #[test]
    fn a_suspected_member_is_alive_for_the_status_filter() {
        let mut m = member("a", MemberStatus::Alive, &[]);
        m.suspect = true;
        assert!(MemberFilter::new(Some("alive"), None, &[])
            .unwrap()
            .matches(&m));
    }

    #[test]
    fn a_bad_filter_names_its_flag() {
        let e = MemberFilter::new(None, Some("web("), &[]).unwrap_err();
        assert!(e.starts_with("--name"), "{e}");
        let e = MemberFilter::new(None, None, &["role".into()]).unwrap_err();
        assert!(e.starts_with("--tag"), "{e}");
    }

    #[test]
    fn slots_filter_by_use_and_state() {
        let slot = |member: Option<&str>, state| SlotView {
            backend: "web".into(),
            slot: "web1".into(),
            member: member.map(str::to_string),
            addr: None,
            state,
            haproxy_status: "UP".into(),
        };
        let used = SlotFilter {
            used: true,
            states: vec![],
        };
        assert!(used.matches(&slot(Some("a"), SlotState::Ready)));
        assert!(!used.matches(&slot(None, SlotState::Maint)));
        let drain = SlotFilter {
            used: false,
            states: vec![SlotState::Drain, SlotState::Maint],
        };
        assert!(drain.matches(&slot(None, SlotState::Maint)));
        assert!(!drain.matches(&slot(Some("a"), SlotState::Ready)));
    }
}
