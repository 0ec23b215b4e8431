//! Fitting an answer into one ACK frame. HAProxy cannot receive fragmented frames (2.6)
//! or any fragments at all (3.1+), so an answer is cut to the negotiated `max-frame-size`
//! instead of being dropped whole: small facts first (in the order given, `node_*` before
//! the others), then the lists, each cut at an item boundary, with `<name>_truncated` set
//! to `true` next to a list that was cut. Pure.

use super::codec::{varint_len, Action, TypedData, VarScope};

/// One variable of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A small value (a boolean, a number, one name): set whole, or left out when it does
    /// not fit.
    Scalar {
        /// Variable name.
        name: &'static str,
        /// Value.
        value: TypedData,
    },
    /// A comma-separated list: cut after the last item that fits.
    List {
        /// Variable name; `<name>_truncated` is set next to it when it was cut.
        name: &'static str,
        /// The items joined with `,`.
        items: String,
    },
}

/// An answer cut to size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fitted {
    /// The actions to send.
    pub actions: Vec<Action>,
    /// Variables cut short or left out (empty when everything fitted).
    pub cut: Vec<&'static str>,
}

/// The name of the flag set next to a cut list.
pub fn truncated_name(list: &str) -> String {
    format!("{list}_truncated")
}

/// Bytes of a set-var action: type, nb-args, scope, name, typed value.
fn set_var_len(name: &str, value_len: usize) -> usize {
    3 + varint_len(name.len() as u64) + name.len() + value_len
}

fn typed_len(v: &TypedData) -> usize {
    let mut b = Vec::new();
    v.encode(&mut b);
    b.len()
}

/// The facts that fit into `room` bytes of ACK payload: every scalar first (those that
/// fit, in order), then every list (whole, or cut with its `_truncated` flag).
pub fn fit(facts: Vec<Fact>, scope: VarScope, room: usize) -> Fitted {
    let mut out = Fitted::default();
    let mut left = room;
    let set = |name: &str, value: TypedData| Action::SetVar {
        scope,
        name: name.to_string(),
        value,
    };
    let (scalars, lists): (Vec<Fact>, Vec<Fact>) = facts
        .into_iter()
        .partition(|f| matches!(f, Fact::Scalar { .. }));
    for f in scalars {
        let Fact::Scalar { name, value } = f else {
            continue;
        };
        let n = set_var_len(name, typed_len(&value));
        if n <= left {
            left -= n;
            out.actions.push(set(name, value));
        } else {
            out.cut.push(name);
        }
    }
    for f in lists {
        let Fact::List { name, items } = f else {
            continue;
        };
        let whole = set_var_len(name, 1 + varint_len(items.len() as u64) + items.len());
        if whole <= left {
            left -= whole;
            out.actions
                .push(set(name, TypedData::String(items.into_bytes())));
            continue;
        }
        out.cut.push(name);
        let flag = truncated_name(name);
        let flag_len = set_var_len(&flag, 1);
        let empty_list = set_var_len(name, 2);
        if left < flag_len + empty_list {
            // not even an empty list and its flag: the flag alone if it fits
            if flag_len <= left {
                left -= flag_len;
                out.actions.push(set(&flag, TypedData::Bool(true)));
            }
            continue;
        }
        // room for the list's text (the varint of its length is counted at its widest)
        let avail = left - flag_len - set_var_len(name, 1) - varint_len(left as u64);
        let cut_at = items.as_bytes()[..=avail.min(items.len() - 1)]
            .iter()
            .rposition(|&b| b == b',')
            .unwrap_or(0);
        let head = &items[..cut_at];
        left -= set_var_len(name, 1 + varint_len(head.len() as u64) + head.len()) + flag_len;
        out.actions
            .push(set(name, TypedData::String(head.as_bytes().to_vec())));
        out.actions.push(set(&flag, TypedData::Bool(true)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spoe::codec::Frame;

    fn ack_len(actions: &[Action]) -> usize {
        Frame::Ack {
            stream_id: 1,
            frame_id: 1,
            actions: actions.to_vec(),
        }
        .to_bytes()
        .len()
            - 4
            - 7
    }

    fn names(n: usize) -> String {
        (0..n)
            .map(|i| format!("node-{i:04}-{}", "x".repeat(30)))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn everything_that_fits_is_sent_whole() {
        let facts = vec![
            Fact::List {
                name: "backend_members",
                items: "a,b".into(),
            },
            Fact::Scalar {
                name: "node_alive",
                value: TypedData::Bool(true),
            },
        ];
        let f = fit(facts, VarScope::Txn, 1000);
        assert!(f.cut.is_empty());
        assert_eq!(f.actions.len(), 2);
        // scalars go first
        assert!(matches!(&f.actions[0], Action::SetVar { name, .. } if name == "node_alive"));
    }

    #[test]
    fn a_long_list_is_cut_at_an_item_boundary_and_flagged_while_scalars_stay() {
        for room in [60usize, 100, 240, 1000, 16_000] {
            let facts = vec![
                Fact::Scalar {
                    name: "node_alive",
                    value: TypedData::Bool(true),
                },
                Fact::List {
                    name: "backend_members",
                    items: names(1000),
                },
            ];
            let f = fit(facts, VarScope::Txn, room);
            assert!(
                ack_len(&f.actions) <= room,
                "room {room}: {}",
                ack_len(&f.actions)
            );
            assert_eq!(f.cut, ["backend_members"]);
            let by_name = |n: &str| {
                f.actions.iter().find_map(|a| match a {
                    Action::SetVar { name, value, .. } if name == n => Some(value.clone()),
                    _ => None,
                })
            };
            assert_eq!(
                by_name("node_alive"),
                Some(TypedData::Bool(true)),
                "room {room}"
            );
            assert_eq!(
                by_name("backend_members_truncated"),
                Some(TypedData::Bool(true)),
                "room {room}"
            );
            if let Some(TypedData::String(b)) = by_name("backend_members") {
                let s = String::from_utf8(b).unwrap();
                assert!(
                    s.is_empty() || names(1000).starts_with(&format!("{s},")),
                    "cut inside an item: {s:?}"
                );
                if room >= 1000 {
                    assert!(!s.is_empty(), "room {room} holds some names");
                }
            }
        }
    }

    #[test]
    fn a_scalar_that_does_not_fit_is_left_out_and_named() {
        let facts = vec![
            Fact::Scalar {
                name: "node_status",
                value: TypedData::str("alive"),
            },
            Fact::Scalar {
                name: "server_node",
                value: TypedData::str("n".repeat(500)),
            },
        ];
        let f = fit(facts, VarScope::Txn, 100);
        assert_eq!(f.cut, ["server_node"]);
        assert_eq!(f.actions.len(), 1);
    }
}
