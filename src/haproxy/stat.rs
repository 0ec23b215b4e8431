//! `show stat` CSV parser (nom, zero-copy).
//!
//! The first line is `# ` followed by the comma-separated column names; every line ends
//! with a trailing comma; the reply ends with an empty line. Columns are found by header
//! name, so the ten columns 2.8 inserts (and whatever 3.x adds) do not break anything, and
//! unknown columns are kept.

use std::borrow::Cow;

use nom::bytes::complete::{tag, take_till};
use nom::IResult;

use super::error::ParseError;
use super::status::ServerStatus;

const WHAT: &str = "show stat";

/// The kind of a `show stat` row (`type` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowKind {
    /// `type` 0 (`svname` FRONTEND).
    Frontend,
    /// `type` 1 (`svname` BACKEND).
    Backend,
    /// `type` 2: a server (a slot).
    Server,
    /// `type` 3: a listener.
    Listener,
    /// Another type number.
    Other(u8),
}

/// Every column name of HAProxy 2.6.12's `show stat` (index = position in 2.6).
pub const COLUMNS_2_6: [&str; 128] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

/// Positions of the columns the slot manager reads (None when the header lacks them).
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    pxname: usize,
    svname: usize,
    status: Option<usize>,
    kind: Option<usize>,
    scur: Option<usize>,
    weight: Option<usize>,
    addr: Option<usize>,
    check_status: Option<usize>,
    sid: Option<usize>,
}

/// A parsed `show stat` reply. Cells borrow from the input (quoted cells with doubled
/// quotes are the only owned ones).
#[derive(Debug, Clone)]
pub struct StatTable<'a> {
    columns: Vec<&'a str>,
    cells: Vec<Cow<'a, str>>,
    kinds: Vec<RowKind>,
    known: Known,
}

/// One row of a [`StatTable`].
#[derive(Debug, Clone, Copy)]
pub struct StatRow<'t, 'a> {
    table: &'t StatTable<'a>,
    index: usize,
}

impl<'a> StatTable<'a> {
    /// Parses a complete `show stat` reply (CSV with its `# ` header).
    pub fn parse(input: &'a str) -> Result<StatTable<'a>, ParseError> {
        parse_table(input)
    }

    /// Column names in header order (extra columns of newer versions included).
    pub fn columns(&self) -> &[&'a str] {
        &self.columns
    }

    /// Position of a column by header name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| *c == name)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Row `index`.
    pub fn row(&self, index: usize) -> Option<StatRow<'_, 'a>> {
        (index < self.len()).then_some(StatRow { table: self, index })
    }

    /// All rows in order.
    pub fn rows(&self) -> impl Iterator<Item = StatRow<'_, 'a>> + '_ {
        (0..self.len()).map(move |index| StatRow { table: self, index })
    }

    /// Server rows only.
    pub fn servers(&self) -> impl Iterator<Item = StatRow<'_, 'a>> + '_ {
        self.rows().filter(|r| r.kind() == RowKind::Server)
    }
}

impl<'t, 'a> StatRow<'t, 'a> {
    fn cell(&self, col: usize) -> &'t str {
        let n = self.table.columns.len();
        &self.table.cells[self.index * n + col]
    }

    fn opt(&self, col: Option<usize>) -> Option<&'t str> {
        col.map(|c| self.cell(c)).filter(|s| !s.is_empty())
    }

    /// A cell by column name (`None` if the column does not exist).
    pub fn get(&self, name: &str) -> Option<&'t str> {
        self.table.column(name).map(|c| self.cell(c))
    }

    /// Row kind.
    pub fn kind(&self) -> RowKind {
        self.table.kinds[self.index]
    }

    /// `pxname`: proxy (backend) name.
    pub fn proxy(&self) -> &'t str {
        self.cell(self.table.known.pxname)
    }

    /// `svname`: server (slot) name, or `FRONTEND` / `BACKEND`.
    pub fn name(&self) -> &'t str {
        self.cell(self.table.known.svname)
    }

    /// `status`, parsed.
    pub fn status(&self) -> ServerStatus {
        ServerStatus::parse(self.opt(self.table.known.status).unwrap_or(""))
    }

    /// `status`, raw.
    pub fn status_str(&self) -> &'t str {
        self.opt(self.table.known.status).unwrap_or("")
    }

    /// `scur`: current sessions.
    pub fn scur(&self) -> Option<u64> {
        self.opt(self.table.known.scur).and_then(|s| s.parse().ok())
    }

    /// `weight`.
    pub fn weight(&self) -> Option<u32> {
        self.opt(self.table.known.weight)
            .and_then(|s| s.parse().ok())
    }

    /// `sid`: server id.
    pub fn sid(&self) -> Option<u32> {
        self.opt(self.table.known.sid).and_then(|s| s.parse().ok())
    }

    /// `addr`: `ip:port` (IPv6 in brackets), `None` if empty.
    pub fn addr(&self) -> Option<&'t str> {
        self.opt(self.table.known.addr)
    }

    /// `check_status` without the `* ` "check running" prefix; `None` if empty.
    pub fn check_status(&self) -> Option<&'t str> {
        self.opt(self.table.known.check_status)
            .map(|s| s.strip_prefix("* ").unwrap_or(s))
    }
}

fn fail(input: &[u8], offset: usize, msg: impl Into<String>) -> ParseError {
    ParseError::at(WHAT, input, offset, msg)
}

/// One unquoted cell: everything up to `,` or end of line.
fn plain_cell(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_till(|b| b == b',' || b == b'\n')(i)
}

/// The header line after `# `.
fn header_start(i: &[u8]) -> IResult<&[u8], &[u8]> {
    tag("# ")(i)
}

fn offset(base: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - base.as_ptr() as usize
}

/// Parses one line of cells starting at `pos`; pushes them; returns the position after `\n`.
fn parse_line<'a>(
    text: &'a str,
    pos: usize,
    out: &mut Vec<Cow<'a, str>>,
) -> Result<usize, ParseError> {
    let base = text.as_bytes();
    let mut rest = &base[pos..];
    loop {
        if rest.first() == Some(&b'"') {
            // quoted cell: "" is an escaped quote
            let start = offset(base, rest) + 1;
            let mut j = start;
            let mut escaped = false;
            loop {
                match base.get(j) {
                    None => return Err(fail(base, j, "unterminated quoted cell")),
                    Some(b'"') if base.get(j + 1) == Some(&b'"') => {
                        escaped = true;
                        j += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => j += 1,
                }
            }
            let raw = &text[start..j];
            out.push(if escaped {
                Cow::Owned(raw.replace("\"\"", "\""))
            } else {
                Cow::Borrowed(raw)
            });
            rest = &base[j + 1..];
        } else {
            let (r, cell) =
                plain_cell(rest).map_err(|_| fail(base, offset(base, rest), "bad cell"))?;
            let s = offset(base, cell);
            out.push(Cow::Borrowed(&text[s..s + cell.len()]));
            rest = r;
        }
        match rest.first() {
            Some(b',') => rest = &rest[1..],
            Some(b'\n') => return Ok(offset(base, rest) + 1),
            Some(_) => {
                return Err(fail(
                    base,
                    offset(base, rest),
                    "expected `,` or end of line after a quoted cell",
                ))
            }
            None => return Err(fail(base, offset(base, rest), "truncated: line has no end")),
        }
    }
}

fn parse_table(text: &str) -> Result<StatTable<'_>, ParseError> {
    let base = text.as_bytes();
    let rest = match header_start(base) {
        Ok((r, _)) => r,
        Err(_) => return Err(fail(base, 0, "expected the `# ` header line")),
    };
    // header
    let mut columns: Vec<&str> = Vec::with_capacity(160);
    let mut cells: Vec<Cow<'_, str>> = Vec::new();
    let mut pos = parse_line(text, offset(base, rest), &mut cells)?;
    for c in cells.drain(..) {
        match c {
            Cow::Borrowed(s) => columns.push(s),
            Cow::Owned(_) => return Err(fail(base, 2, "quoted column name")),
        }
    }
    let trailing = columns.last() == Some(&"");
    if trailing {
        columns.pop();
    }
    let n = columns.len();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let known = Known {
        pxname: find("pxname").ok_or_else(|| fail(base, 2, "no `pxname` column"))?,
        svname: find("svname").ok_or_else(|| fail(base, 2, "no `svname` column"))?,
        status: find("status"),
        kind: find("type"),
        scur: find("scur"),
        weight: find("weight"),
        addr: find("addr"),
        check_status: find("check_status"),
        sid: find("sid"),
    };
    let mut kinds = Vec::new();
    cells.reserve(n * (base.len() / (n * 2 + 1)).max(1));
    while pos < base.len() {
        if base[pos] == b'\n' {
            // the empty line ending the reply
            break;
        }
        let line_start = pos;
        let before = cells.len();
        pos = parse_line(text, pos, &mut cells)?;
        let got = cells.len() - before;
        let expect = if trailing { n + 1 } else { n };
        if got != expect && !(trailing && got == n) {
            return Err(fail(
                base,
                line_start,
                format!("row has {got} cells, header has {expect}"),
            ));
        }
        if got > n {
            cells.truncate(before + n);
        }
        let row = &cells[before..];
        let kind = match known.kind.map(|k| &*row[k]) {
            Some("0") => RowKind::Frontend,
            Some("1") => RowKind::Backend,
            Some("2") => RowKind::Server,
            Some("3") => RowKind::Listener,
            Some(other) => match other.parse::<u8>() {
                Ok(v) => RowKind::Other(v),
                Err(_) => {
                    return Err(fail(
                        base,
                        line_start,
                        format!("bad `type` value {other:?}"),
                    ))
                }
            },
            None => match &*row[known.svname] {
                "FRONTEND" => RowKind::Frontend,
                "BACKEND" => RowKind::Backend,
                _ => RowKind::Server,
            },
        };
        kinds.push(kind);
    }
    Ok(StatTable {
        columns,
        cells,
        kinds,
        known,
    })
}
