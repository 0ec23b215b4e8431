//! `haserf event | query | tags | join | force-leave | monitor | keys | rtt | info`: Serf's
//! CLI verbs over one client code path, the agent's Serf RPC ([`crate::rpc::client`]), so
//! they work against a haserf agent and a stock serf agent alike. Flags mean what serf's
//! do; `--format json` prints one JSON document (`monitor`: one per line).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::render::Format;
use crate::rpc::client::RpcClient;
use crate::rpc::codec::Command;

/// Where the agent's RPC is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RpcTarget {
    /// `IP:PORT` (default 127.0.0.1:7373).
    pub addr: String,
    /// `rpc_auth` token.
    pub auth: Option<String>,
    /// Output format.
    pub format: Format,
}

/// What to ask.
#[derive(Debug, Clone)]
pub enum Verb {
    /// `event NAME [PAYLOAD]`.
    Event {
        /// Name.
        name: String,
        /// Payload.
        payload: String,
        /// Let receivers coalesce it.
        coalesce: bool,
    },
    /// `query NAME [PAYLOAD]` with serf's filters.
    Query {
        /// Name.
        name: String,
        /// Payload.
        payload: String,
        /// `--node` (repeatable).
        nodes: Vec<String>,
        /// `--tag KEY=REGEXP` (repeatable).
        tags: Vec<String>,
        /// Ask for acks (not `--no-ack`).
        ack: bool,
        /// `--timeout` (None: serf's default from the cluster size).
        timeout: Option<Duration>,
        /// `--relay-factor`.
        relay_factor: u8,
    },
    /// `tags --set KEY=VALUE… --delete KEY…`.
    Tags {
        /// Tags to set.
        set: Vec<String>,
        /// Tags to delete.
        delete: Vec<String>,
    },
    /// `join ADDR…`.
    Join {
        /// Addresses.
        addrs: Vec<String>,
        /// Replay old user events.
        replay: bool,
    },
    /// `force-leave NODE`.
    ForceLeave {
        /// The member.
        node: String,
        /// Forget it at once.
        prune: bool,
    },
    /// `monitor --log-level LEVEL`.
    Monitor {
        /// Level.
        level: String,
    },
    /// `keys --list | --install K | --use K | --remove K`.
    Keys {
        /// `list-keys`, `install-key`, `use-key` or `remove-key`.
        op: String,
        /// The key (not for list).
        key: String,
    },
    /// `rtt NODE [NODE]`.
    Rtt {
        /// First node.
        a: String,
        /// Second node (default: the agent's own).
        b: Option<String>,
    },
    /// `info`.
    Info,
}

/// Runs `verb` against the agent at `target`; prints the answer; returns the exit status
/// (0, or 1 with the error on stderr).
pub fn run(target: &RpcTarget, verb: Verb) -> i32 {
    match run_inner(target, verb) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn connect(t: &RpcTarget) -> Result<RpcClient, String> {
    RpcClient::connect(&t.addr, t.auth.as_deref(), Duration::from_secs(10))
}

fn ok_or(error: String) -> Result<(), String> {
    if error.is_empty() {
        Ok(())
    } else {
        Err(error)
    }
}

fn print(t: &RpcTarget, text: &str, json: Value) {
    match t.format {
        Format::Text => out!("{text}"),
        Format::Json => out!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
    }
}

fn kv_pairs(items: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{flag} {s:?}: expected KEY=VALUE"))
        })
        .collect()
}

fn run_inner(t: &RpcTarget, verb: Verb) -> Result<(), String> {
    let mut c = connect(t)?;
    match verb {
        Verb::Event {
            name,
            payload,
            coalesce,
        } => {
            let r = c.call(
                Command::Event {
                    name: name.clone(),
                    payload: payload.into_bytes(),
                    coalesce,
                },
                false,
            )?;
            ok_or(r.error)?;
            print(
                t,
                &format!("Event '{name}' dispatched! Coalescing enabled: {coalesce}"),
                json!({"event": name, "dispatched": true, "coalesce": coalesce}),
            );
        }
        Verb::Query {
            name,
            payload,
            nodes,
            tags,
            ack,
            timeout,
            relay_factor,
        } => query(
            t,
            &mut c,
            name,
            payload,
            nodes,
            tags,
            ack,
            timeout,
            relay_factor,
        )?,
        Verb::Tags { set, delete } => {
            let r = c.call(
                Command::Tags {
                    set: kv_pairs(&set, "--set")?,
                    delete,
                },
                false,
            )?;
            ok_or(r.error)?;
            print(
                t,
                "Successfully updated agent tags",
                json!({"tags_updated": true}),
            );
        }
        Verb::Join { addrs, replay } => {
            let r = c.call(
                Command::Join {
                    existing: addrs,
                    replay,
                },
                true,
            )?;
            ok_or(r.error)?;
            let n = r.body.as_ref().and_then(|b| b["Num"].as_u64()).unwrap_or(0);
            print(
                t,
                &format!("Successfully joined cluster by contacting {n} nodes."),
                json!({"contacted": n}),
            );
        }
        Verb::ForceLeave { node, prune } => {
            let r = c.call(
                Command::ForceLeave {
                    node: node.clone(),
                    prune,
                },
                false,
            )?;
            ok_or(r.error)?;
            print(
                t,
                &format!("Force leave of {node} sent"),
                json!({"force_leave": node, "prune": prune}),
            );
        }
        Verb::Monitor { level } => {
            let seq = c.send(Command::Monitor { level })?;
            let h = c.read_header()?;
            if h.seq == seq {
                ok_or(h.error)?;
            }
            c.set_read_timeout(None)?;
            loop {
                let (_, rec) = c.record()?;
                let line = rec["Log"].as_str().unwrap_or_default().to_string();
                match t.format {
                    Format::Text => out!("{line}"),
                    Format::Json => out!("{}", json!({ "log": line })),
                }
            }
        }
        Verb::Keys { op, key } => keys(t, &mut c, &op, key)?,
        Verb::Rtt { a, b } => rtt(t, &mut c, a, b)?,
        Verb::Info => {
            let r = c.call(Command::Stats, true)?;
            ok_or(r.error)?;
            let body = r.body.unwrap_or(Value::Null);
            let mut text = String::new();
            if let Some(sections) = body.as_object() {
                for (name, kv) in sections {
                    text.push_str(&format!("{name}:\n"));
                    for (k, v) in kv.as_object().into_iter().flatten() {
                        text.push_str(&format!("\t{k} = {}\n", v.as_str().unwrap_or_default()));
                    }
                }
            }
            print(t, text.trim_end(), body);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn query(
    t: &RpcTarget,
    c: &mut RpcClient,
    name: String,
    payload: String,
    nodes: Vec<String>,
    tags: Vec<String>,
    ack: bool,
    timeout: Option<Duration>,
    relay_factor: u8,
) -> Result<(), String> {
    let seq = c.send(Command::Query {
        filter_nodes: nodes,
        filter_tags: kv_pairs(&tags, "--tag")?,
        request_ack: ack,
        relay_factor,
        timeout: timeout.unwrap_or_default(),
        name: name.clone(),
        payload: payload.into_bytes(),
    })?;
    let h = c.read_header()?;
    if h.seq == seq {
        ok_or(h.error)?;
    }
    c.set_read_timeout(Some(
        timeout.unwrap_or(Duration::from_secs(60)) + Duration::from_secs(10),
    ))?;
    if t.format == Format::Text {
        out!("Query '{name}' dispatched");
    }
    let mut acks = Vec::new();
    let mut responses = serde_json::Map::new();
    loop {
        let (s, rec) = c.record()?;
        if s != seq {
            continue;
        }
        let from = rec["From"].as_str().unwrap_or_default().to_string();
        match rec["Type"].as_str() {
            Some("ack") => {
                if t.format == Format::Text {
                    out!("Ack from '{from}'");
                }
                acks.push(Value::String(from));
            }
            Some("response") => {
                let p = rec["Payload"].as_str().unwrap_or_default().to_string();
                if t.format == Format::Text {
                    out!("Response from '{from}': {p}");
                }
                responses.insert(from, Value::String(p));
            }
            _ => break,
        }
    }
    match t.format {
        Format::Text => {
            if ack {
                out!("Total Acks: {}", acks.len());
            }
            out!("Total Responses: {}", responses.len());
        }
        Format::Json => print(t, "", json!({"Acks": acks, "Responses": responses})),
    }
    Ok(())
}

fn keys(t: &RpcTarget, c: &mut RpcClient, op: &str, key: String) -> Result<(), String> {
    let cmd = match op {
        "install-key" => Command::InstallKey { key },
        "use-key" => Command::UseKey { key },
        "remove-key" => Command::RemoveKey { key },
        _ => Command::ListKeys,
    };
    let r = c.call(cmd, true)?;
    let body = r.body.unwrap_or(Value::Null);
    let messages = body["Messages"].as_object().cloned().unwrap_or_default();
    if !r.error.is_empty() {
        let detail: Vec<String> = messages
            .iter()
            .map(|(n, m)| format!("\t{n}: {}", m.as_str().unwrap_or_default()))
            .collect();
        return Err(format!("{}\n{}", r.error, detail.join("\n")));
    }
    let nodes = body["NumNodes"].as_u64().unwrap_or(0);
    if op == "list-keys" {
        let keys = body["Keys"].as_object().cloned().unwrap_or_default();
        let text: Vec<String> = keys
            .iter()
            .map(|(k, n)| format!("{k} [{}/{nodes}]", n.as_u64().unwrap_or(0)))
            .collect();
        print(
            t,
            &text.join("\n"),
            json!({"keys": keys, "num_nodes": nodes}),
        );
    } else {
        print(
            t,
            &format!("Successfully {op} on {nodes} nodes"),
            json!({"op": op, "num_nodes": nodes, "ok": true}),
        );
    }
    Ok(())
}

fn rtt(t: &RpcTarget, c: &mut RpcClient, a: String, b: Option<String>) -> Result<(), String> {
    let b = match b {
        Some(b) => b,
        None => {
            let r = c.call(Command::Stats, true)?;
            ok_or(r.error)?;
            r.body
                .as_ref()
                .and_then(|v| v["agent"]["name"].as_str())
                .unwrap_or_default()
                .to_string()
        }
    };
    let mut coord = |node: &str| -> Result<Value, String> {
        let r = c.call(
            Command::GetCoordinate {
                node: node.to_string(),
            },
            true,
        )?;
        ok_or(r.error)?;
        let body = r.body.unwrap_or(Value::Null);
        if body["Ok"] != Value::Bool(true) {
            return Err(format!("Could not find a coordinate for node {node:?}"));
        }
        Ok(body["Coord"].clone())
    };
    let (ca, cb) = (coord(&a)?, coord(&b)?);
    let ms = distance(&ca, &cb).as_secs_f64() * 1000.0;
    print(
        t,
        &format!("Estimated {a} <-> {b} rtt: {ms:.3} ms"),
        json!({"a": a, "b": b, "rtt_ms": ms}),
    );
    Ok(())
}

/// Serf's `Coordinate.DistanceTo` on coordinates as JSON.
fn distance(a: &Value, b: &Value) -> Duration {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let vec = |v: &Value| -> Vec<f64> {
        v["Vec"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0)).collect())
            .unwrap_or_default()
    };
    let c = |v: &Value| crate::gossip::coordinate::Coordinate {
        vec: vec(v),
        error: f(v, "Error"),
        adjustment: f(v, "Adjustment"),
        height: f(v, "Height"),
    };
    let (ca, cb) = (c(a), c(b));
    if !ca.is_compatible_with(&cb) {
        return Duration::ZERO;
    }
    ca.distance_to(&cb)
}
