//! Replies sized for their reader: the `members` and `slots` lists one page at a time, free
//! slots counted instead of listed, and a `status` object cut down to a byte budget
//! ([`super::model::RequestOptions`]). Pure functions from views to JSON values.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::model::{MemberView, RequestOptions, SlotView};

/// Bytes a serialized value takes on the wire.
fn size(v: &impl Serialize) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

/// `{"<key>":[…]}` plus `total`/`next` when the reader asked for a page (`offset` or
/// `max_bytes`), plus the `extra` fields. The page holds as many entries from `offset` on
/// as keep the whole line within `max_bytes` (at least one, so every page moves on).
fn paged<T: Serialize>(
    key: &str,
    items: &[T],
    opts: &RequestOptions,
    extra: Map<String, Value>,
) -> Value {
    let mut reply = extra;
    if opts.offset.is_none() && opts.max_bytes.is_none() {
        reply.insert(key.into(), json!(items));
        return Value::Object(reply);
    }
    let total = items.len();
    let start = opts.offset.unwrap_or(0).min(total);
    // the envelope with the widest possible numbers
    let mut envelope = reply.clone();
    envelope.insert(key.into(), json!([]));
    envelope.insert("total".into(), json!(total));
    envelope.insert("next".into(), json!(total));
    let budget = opts.max_bytes.unwrap_or(usize::MAX);
    let mut used = size(&envelope);
    let mut page = Vec::new();
    for item in &items[start..] {
        let v = json!(item);
        let n = size(&v) + usize::from(!page.is_empty());
        if !page.is_empty() && used + n > budget {
            break;
        }
        used += n;
        page.push(v);
    }
    let next = start + page.len();
    reply.insert(key.into(), Value::Array(page));
    reply.insert("total".into(), json!(total));
    if next < total {
        reply.insert("next".into(), json!(next));
    }
    Value::Object(reply)
}

/// The `members` reply: `{"members":[…]}`, paged on request.
pub fn members_reply(members: &[MemberView], opts: &RequestOptions) -> Value {
    paged("members", members, opts, Map::new())
}

/// The `slots` reply: `{"slots":[…]}`; with `used`, only slots holding a member and
/// `"free":{"<backend>":N,…}` for the rest (every backend named, also with 0); paged on
/// request.
pub fn slots_reply(slots: &[SlotView], opts: &RequestOptions) -> Value {
    if !opts.used {
        return paged("slots", slots, opts, Map::new());
    }
    let mut free: BTreeMap<&str, usize> = BTreeMap::new();
    let mut used = Vec::new();
    for s in slots {
        let f = free.entry(s.backend.as_str()).or_default();
        match s.member {
            Some(_) => used.push(s),
            None => *f += 1,
        }
    }
    let mut extra = Map::new();
    extra.insert("free".into(), json!(free));
    paged("slots", &used, opts, extra)
}

/// Cuts an object reply down to `opts.max_bytes`: the largest fields are left out (looking
/// inside nested objects first) and named in `"omitted"` (`haproxy.refused`, …).
pub fn bounded(mut reply: Value, opts: &RequestOptions) -> Value {
    let Some(max) = opts.max_bytes else {
        return reply;
    };
    let mut omitted = Vec::new();
    // room for the "omitted" list itself
    let target = max.saturating_sub(64);
    shrink(&mut reply, target, "", &mut omitted);
    if !omitted.is_empty() {
        if let Value::Object(o) = &mut reply {
            o.insert("omitted".into(), json!(omitted));
        }
    }
    reply
}

fn shrink(v: &mut Value, target: usize, path: &str, omitted: &mut Vec<String>) {
    loop {
        let total = size(v);
        let Value::Object(obj) = v else { return };
        if total <= target || obj.is_empty() {
            return;
        }
        let excess = total - target;
        let (key, child_size) = obj
            .iter()
            .map(|(k, c)| (k.clone(), size(c)))
            .max_by_key(|(_, n)| *n)
            .unwrap_or_default();
        let name = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let child = obj.get_mut(&key).expect("key just found");
        let splittable = matches!(child, Value::Object(o) if o.len() > 1);
        if splittable && child_size > excess + 2 {
            let before = omitted.len();
            shrink(child, child_size - excess, &name, omitted);
            if omitted.len() > before {
                continue;
            }
        }
        obj.remove(&key);
        omitted.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::{MemberStatus, SlotState};

    fn member(i: usize) -> MemberView {
        MemberView {
            name: format!("member-{i:04}-with-a-long-name-xxxxxxxxxxxx"),
            addr: "10.0.0.1".into(),
            port: 7946,
            tags: [("role".to_string(), "web".to_string())].into(),
            status: MemberStatus::Alive,
            suspect: false,
        }
    }

    fn slot(i: usize, member: Option<&str>) -> SlotView {
        SlotView {
            backend: "web".into(),
            slot: format!("web{i}"),
            member: member.map(str::to_string),
            addr: member.map(|_| "10.0.0.1:80".into()),
            state: SlotState::Ready,
            haproxy_status: "UP".into(),
        }
    }

    fn opts(offset: Option<usize>, max_bytes: Option<usize>, used: bool) -> RequestOptions {
        RequestOptions {
            used,
            offset,
            max_bytes,
            framed: false,
            chunk: None,
        }
    }

    #[test]
    fn without_options_the_reply_is_the_plain_list() {
        let m: Vec<MemberView> = (0..3).map(member).collect();
        let v = members_reply(&m, &RequestOptions::default());
        assert_eq!(v, json!({ "members": m }));
    }

    #[test]
    fn pages_stay_within_the_budget_and_cover_the_list_exactly_once() {
        let m: Vec<MemberView> = (0..1000).map(member).collect();
        let mut offset = 0;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let v = members_reply(&m, &opts(Some(offset), Some(8000), false));
            let line = serde_json::to_string(&v).unwrap();
            assert!(line.len() <= 8000, "page of {} bytes", line.len());
            assert_eq!(v["total"], 1000);
            for e in v["members"].as_array().unwrap() {
                seen.push(e["name"].as_str().unwrap().to_string());
            }
            pages += 1;
            match v["next"].as_u64() {
                Some(n) => offset = n as usize,
                None => break,
            }
        }
        assert!(pages > 10, "{pages} pages");
        let want: Vec<String> = m.iter().map(|m| m.name.clone()).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn an_entry_larger_than_the_budget_still_gets_its_own_page() {
        let m: Vec<MemberView> = (0..3).map(member).collect();
        let v = members_reply(&m, &opts(None, Some(10), false));
        assert_eq!(v["members"].as_array().unwrap().len(), 1);
        assert_eq!(v["next"], 1);
        let v = members_reply(&m, &opts(Some(99), None, false));
        assert_eq!(v["members"], json!([]));
        assert!(v.get("next").is_none());
    }

    #[test]
    fn used_slots_are_listed_and_free_ones_counted_per_backend() {
        let mut slots: Vec<SlotView> = (1..=1000).map(|i| slot(i, None)).collect();
        slots[4] = slot(5, Some("a"));
        let mut api = slot(1, None);
        api.backend = "api".into();
        slots.push(api);
        let v = slots_reply(&slots, &opts(None, None, true));
        assert_eq!(v["slots"].as_array().unwrap().len(), 1);
        assert_eq!(v["slots"][0]["slot"], "web5");
        assert_eq!(v["free"], json!({"api": 1, "web": 999}));
        assert!(serde_json::to_string(&v).unwrap().len() < 300);
    }

    #[test]
    fn a_status_reply_is_cut_to_the_budget_naming_what_was_left_out() {
        let big: Vec<String> = (0..500).map(|i| format!("refused-member-{i}")).collect();
        let status = json!({"node": "lb", "ready": true,
            "haproxy": {"pid": 7, "refused": big, "last_error": null}});
        let v = bounded(status.clone(), &opts(None, Some(1000), false));
        assert!(serde_json::to_string(&v).unwrap().len() <= 1000, "{v}");
        assert_eq!(v["node"], "lb");
        assert_eq!(v["haproxy"]["pid"], 7);
        assert_eq!(v["omitted"], json!(["haproxy.refused"]));
        assert_eq!(bounded(status.clone(), &RequestOptions::default()), status);
    }
}
