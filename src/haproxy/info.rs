//! `show info` parser: `Key: value` lines.

use nom::bytes::complete::{tag, take_till, take_till1};
use nom::IResult;

use super::error::ParseError;

const WHAT: &str = "show info";

/// A parsed `show info` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info<'a> {
    /// Every `Key: value` pair in order.
    pub fields: Vec<(&'a str, &'a str)>,
    /// `Pid`.
    pub pid: u32,
    /// `Uptime_sec`.
    pub uptime_sec: u64,
    /// `Start_time_sec` (2.4+), else `None`.
    pub start_time_sec: Option<u64>,
    /// `Stopping`: 1 in a worker that is being replaced (an old connection after a reload).
    pub stopping: bool,
    /// `Version`.
    pub version: &'a str,
}

impl<'a> Info<'a> {
    /// A field by key.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Parses a complete reply.
    pub fn parse(text: &'a str) -> Result<Info<'a>, ParseError> {
        let base = text.as_bytes();
        let mut fields = Vec::with_capacity(64);
        let mut pos = 0;
        while pos < base.len() {
            if base[pos] == b'\n' {
                break;
            }
            match kv(&base[pos..]) {
                Ok((rest, (k, v))) => {
                    let ks = pos;
                    let vs = v.as_ptr() as usize - base.as_ptr() as usize;
                    fields.push((&text[ks..ks + k.len()], &text[vs..vs + v.len()]));
                    pos = rest.as_ptr() as usize - base.as_ptr() as usize;
                }
                Err(_) => {
                    let has_colon = base[pos..]
                        .iter()
                        .take_while(|&&b| b != b'\n')
                        .any(|&b| b == b':');
                    let msg = if !base[pos..].contains(&b'\n') {
                        "truncated: line has no end"
                    } else if has_colon {
                        "expected `Key: value`"
                    } else {
                        "expected `Key: value` (no `:` in line)"
                    };
                    return Err(ParseError::at(WHAT, base, pos, msg));
                }
            }
        }
        let find = |k: &str| fields.iter().find(|(fk, _)| *fk == k).map(|(_, v)| *v);
        let number = |k: &'static str| -> Result<Option<u64>, ParseError> {
            match find(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    let line = fields.iter().position(|(fk, _)| *fk == k).unwrap_or(0) + 1;
                    ParseError {
                        what: WHAT,
                        line,
                        column: k.len() + 3,
                        message: format!("`{k}` is not a number: {v:?}"),
                    }
                }),
            }
        };
        let pid = number("Pid")?.ok_or_else(|| ParseError {
            what: WHAT,
            line: fields.len() + 1,
            column: 1,
            message: "no `Pid` field".into(),
        })?;
        let uptime_sec = number("Uptime_sec")?.unwrap_or(0);
        let start_time_sec = number("Start_time_sec")?;
        let stopping = number("Stopping")?.unwrap_or(0) != 0;
        Ok(Info {
            pid: u32::try_from(pid).unwrap_or(u32::MAX),
            uptime_sec,
            start_time_sec,
            stopping,
            version: find("Version").unwrap_or(""),
            fields,
        })
    }
}

fn kv(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (i, k) = take_till1(|b| b == b':' || b == b'\n')(i)?;
    let (i, _) = tag(":")(i)?;
    let i = i.strip_prefix(b" ").unwrap_or(i);
    let (i, v) = take_till(|b| b == b'\n')(i)?;
    let (i, _) = tag("\n")(i)?;
    Ok((i, (k, v)))
}
