//! `show servers state [<backend>]` parser (nom, zero-copy).
//!
//! Line 1 is the format version (`1`), line 2 is `# ` plus space-separated column names,
//! then one line per server with single-space-separated fields (`-` for empty strings).
//! Columns are found by name; unknown columns are kept.

use std::net::IpAddr;

use nom::bytes::complete::{tag, take_till, take_while1};
use nom::character::complete::char;
use nom::IResult;

use super::error::ParseError;

const WHAT: &str = "show servers state";

/// Admin-state bit: forced maintenance (`state maint` / `disable server`).
pub const ADMIN_FMAINT: u32 = 0x01;
/// Admin-state bit: maintenance inherited from a tracked server.
pub const ADMIN_IMAINT: u32 = 0x02;
/// Admin-state bit: maintenance from configuration (`disabled`); stays set after `ready`.
pub const ADMIN_CMAINT: u32 = 0x04;
/// Admin-state bit: forced drain.
pub const ADMIN_FDRAIN: u32 = 0x08;
/// Admin-state bit: inherited drain.
pub const ADMIN_IDRAIN: u32 = 0x10;
/// Admin-state bit: resolution maintenance.
pub const ADMIN_RMAINT: u32 = 0x20;

/// One server line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState<'a> {
    /// `be_name`.
    pub backend: &'a str,
    /// `srv_name`.
    pub server: &'a str,
    /// `srv_id`.
    pub id: u32,
    /// `srv_addr` (`None` for `-`).
    pub addr: Option<IpAddr>,
    /// `srv_port`.
    pub port: Option<u16>,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u32,
    /// `srv_admin_state` bit mask (see the `ADMIN_*` constants).
    pub admin_state: u32,
    /// `srv_uweight`.
    pub uweight: u32,
    /// `srv_iweight`: configured weight.
    pub iweight: u32,
    /// `srv_check_state` bit mask: 0x02 configured, 0x04 enabled, 0x08 paused.
    pub check_state: u32,
    /// `srv_check_health`.
    pub check_health: u32,
    /// Every field by column, verbatim (extra columns of newer versions included).
    pub fields: Vec<&'a str>,
}

impl ServerState<'_> {
    /// In maintenance (forced, inherited, configured-and-not-enabled, or resolution).
    pub fn in_maint(&self) -> bool {
        self.admin_state & (ADMIN_FMAINT | ADMIN_IMAINT | ADMIN_RMAINT) != 0
            || (self.admin_state & ADMIN_CMAINT != 0 && self.admin_state & ADMIN_FMAINT != 0)
    }

    /// Drain flag set (forced or inherited).
    pub fn draining(&self) -> bool {
        self.admin_state & (ADMIN_FDRAIN | ADMIN_IDRAIN) != 0
    }

    /// Health checks configured on this server.
    pub fn has_check(&self) -> bool {
        self.check_state & 0x02 != 0
    }
}

impl ServersState<'_> {
    /// The value of column `name` in `row` (`None` when the column is absent or `-`).
    pub fn field<'r>(&self, row: &'r ServerState<'_>, name: &str) -> Option<&'r str> {
        let c = self.columns.iter().position(|c| *c == name)?;
        row.fields
            .get(c)
            .copied()
            .filter(|v| *v != "-" && !v.is_empty())
    }
}

/// A parsed `show servers state` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServersState<'a> {
    /// Format version (first line).
    pub version: u32,
    /// Column names.
    pub columns: Vec<&'a str>,
    /// One entry per server.
    pub servers: Vec<ServerState<'a>>,
}

fn version_line(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, v) = take_while1(|b: u8| b.is_ascii_digit())(i)?;
    let (i, _) = char('\n')(i)?;
    Ok((i, v))
}

fn header_line(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, _) = tag("# ")(i)?;
    let (i, h) = take_till(|b| b == b'\n')(i)?;
    let (i, _) = char('\n')(i)?;
    Ok((i, h))
}

fn offset(base: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - base.as_ptr() as usize
}

impl<'a> ServersState<'a> {
    /// Parses a complete reply.
    pub fn parse(text: &'a str) -> Result<ServersState<'a>, ParseError> {
        let base = text.as_bytes();
        let fail = |off: usize, m: String| ParseError::at(WHAT, base, off, m);
        let (rest, v) =
            version_line(base).map_err(|_| fail(0, "expected the format version line".into()))?;
        let version: u32 = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(0, "bad version".into()))?;
        let hstart = offset(base, rest);
        let (rest, h) =
            header_line(rest).map_err(|_| fail(hstart, "expected the `# ` header line".into()))?;
        let hs = offset(base, h);
        let columns: Vec<&str> = text[hs..hs + h.len()].split(' ').collect();
        let col = |name: &str| columns.iter().position(|c| *c == name);
        let need = |name: &'static str| {
            col(name).ok_or_else(|| fail(hstart, format!("no `{name}` column")))
        };
        let c_be = need("be_name")?;
        let c_srv = need("srv_name")?;
        let c_id = need("srv_id")?;
        let c_addr = need("srv_addr")?;
        let c_op = need("srv_op_state")?;
        let c_admin = need("srv_admin_state")?;
        let c_uw = need("srv_uweight")?;
        let c_iw = need("srv_iweight")?;
        let c_port = col("srv_port");
        let c_chk = col("srv_check_state");
        let c_health = col("srv_check_health");
        let mut servers = Vec::new();
        let mut pos = offset(base, rest);
        while pos < base.len() {
            if base[pos] == b'\n' {
                break;
            }
            let line_start = pos;
            let end = match base[pos..].iter().position(|&b| b == b'\n') {
                Some(e) => pos + e,
                None => return Err(fail(base.len(), "truncated: line has no end".into())),
            };
            let line = &text[pos..end];
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.len() < columns.len() {
                return Err(fail(
                    end,
                    format!(
                        "row has {} fields, header has {}",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            let col_off =
                |c: usize| line_start + fields[..c].iter().map(|f| f.len() + 1).sum::<usize>();
            let num = |c: usize| -> Result<u32, ParseError> {
                fields[c].parse().map_err(|_| {
                    fail(
                        col_off(c),
                        format!("`{}` is not a number: {:?}", columns[c], fields[c]),
                    )
                })
            };
            let addr = match fields[c_addr] {
                "-" | "" => None,
                a => Some(
                    a.parse::<IpAddr>()
                        .map_err(|_| fail(col_off(c_addr), format!("bad address {a:?}")))?,
                ),
            };
            let port = match c_port {
                Some(c) => match fields[c] {
                    "-" | "" => None,
                    p => Some(
                        p.parse::<u16>()
                            .map_err(|_| fail(col_off(c), format!("bad port {p:?}")))?,
                    ),
                },
                None => None,
            };
            servers.push(ServerState {
                backend: fields[c_be],
                server: fields[c_srv],
                id: num(c_id)?,
                addr,
                port,
                op_state: num(c_op)?,
                admin_state: num(c_admin)?,
                uweight: num(c_uw)?,
                iweight: num(c_iw)?,
                check_state: match c_chk {
                    Some(c) => num(c)?,
                    None => 0,
                },
                check_health: match c_health {
                    Some(c) => num(c)?,
                    None => 0,
                },
                fields,
            });
            pos = end + 1;
        }
        Ok(ServersState {
            version,
            columns,
            servers,
        })
    }
}
