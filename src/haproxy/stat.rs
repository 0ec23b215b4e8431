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
    kind: Option<usize>,
}

/// Known columns materialised per row (the rest is read on demand from the row's line).
const K_PXNAME: usize = 0;
const K_SVNAME: usize = 1;
const K_STATUS: usize = 2;
const K_TYPE: usize = 3;
const K_SCUR: usize = 4;
const K_WEIGHT: usize = 5;
const K_ADDR: usize = 6;
const K_CHECK: usize = 7;
const K_SID: usize = 8;
const KNOWN: [&str; 9] = [
    "pxname",
    "svname",
    "status",
    "type",
    "scur",
    "weight",
    "addr",
    "check_status",
    "sid",
];
const NONE: u8 = u8::MAX;

#[derive(Debug, Clone)]
struct RowData<'a> {
    /// The row's line (with its newline), for columns read on demand.
    line: &'a str,
    known: [Cow<'a, str>; 9],
    kind: RowKind,
}

/// A parsed `show stat` reply. Zero-copy: the columns the slot manager reads are kept per
/// row as slices of the input (only a quoted cell with doubled quotes is copied); any other
/// column is read on demand from the row's line.
#[derive(Debug, Clone)]
pub struct StatTable<'a> {
    columns: Vec<&'a str>,
    rows: Vec<RowData<'a>>,
    #[allow(dead_code)]
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
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
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
    fn data(&self) -> &'t RowData<'a> {
        &self.table.rows[self.index]
    }

    fn k(&self, i: usize) -> &'t str {
        &self.data().known[i]
    }

    fn opt(&self, i: usize) -> Option<&'t str> {
        Some(self.k(i)).filter(|s| !s.is_empty())
    }

    /// A cell by column name (`None` if the column does not exist). Re-reads the row's line
    /// (a borrowed slice of the input unless the cell was quoted with doubled quotes).
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        let col = self.table.column(name)?;
        let mut cells = Vec::with_capacity(self.table.columns.len() + 1);
        // rows were validated at parse time, so this succeeds
        parse_line(self.data().line, 0, &mut cells).ok()?;
        cells.into_iter().nth(col)
    }

    /// Row kind.
    pub fn kind(&self) -> RowKind {
        self.data().kind
    }

    /// `pxname`: proxy (backend) name.
    pub fn proxy(&self) -> &'t str {
        self.k(K_PXNAME)
    }

    /// `svname`: server (slot) name, or `FRONTEND` / `BACKEND`.
    pub fn name(&self) -> &'t str {
        self.k(K_SVNAME)
    }

    /// `status`, parsed.
    pub fn status(&self) -> ServerStatus {
        ServerStatus::parse(self.k(K_STATUS))
    }

    /// `status`, raw.
    pub fn status_str(&self) -> &'t str {
        self.k(K_STATUS)
    }

    /// `scur`: current sessions.
    pub fn scur(&self) -> Option<u64> {
        self.opt(K_SCUR).and_then(|s| s.parse().ok())
    }

    /// `weight`.
    pub fn weight(&self) -> Option<u32> {
        self.opt(K_WEIGHT).and_then(|s| s.parse().ok())
    }

    /// `sid`: server id.
    pub fn sid(&self) -> Option<u32> {
        self.opt(K_SID).and_then(|s| s.parse().ok())
    }

    /// `addr`: `ip:port` (IPv6 in brackets), `None` if empty.
    pub fn addr(&self) -> Option<&'t str> {
        self.opt(K_ADDR)
    }

    /// `check_status` without the `* ` "check running" prefix; `None` if empty.
    pub fn check_status(&self) -> Option<&'t str> {
        self.opt(K_CHECK).map(|s| s.strip_prefix("* ").unwrap_or(s))
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
    if find("pxname").is_none() {
        return Err(fail(base, 2, "no `pxname` column"));
    }
    if find("svname").is_none() {
        return Err(fail(base, 2, "no `svname` column"));
    }
    // column index → known slot
    let mut want = vec![NONE; n + 1];
    for (k, name) in KNOWN.iter().enumerate() {
        if let Some(c) = find(name) {
            want[c] = k as u8;
        }
    }
    let known = Known { kind: find("type") };
    let mut rows = Vec::with_capacity(base.len() / (n * 2 + 1) + 1);
    let expect = if trailing { n + 1 } else { n };
    while pos < base.len() {
        if base[pos] == b'\n' {
            // the empty line ending the reply
            break;
        }
        let (row, next) = scan_row(text, pos, &want, expect, trailing, n)?;
        let kind = match (known.kind, &*row.known[K_TYPE]) {
            (Some(_), "0") => RowKind::Frontend,
            (Some(_), "1") => RowKind::Backend,
            (Some(_), "2") => RowKind::Server,
            (Some(_), "3") => RowKind::Listener,
            (Some(_), other) => match other.parse::<u8>() {
                Ok(v) => RowKind::Other(v),
                Err(_) => {
                    return Err(fail(base, pos, format!("bad `type` value {other:?}")));
                }
            },
            (None, _) => match &*row.known[K_SVNAME] {
                "FRONTEND" => RowKind::Frontend,
                "BACKEND" => RowKind::Backend,
                _ => RowKind::Server,
            },
        };
        rows.push(RowData { kind, ..row });
        pos = next;
    }
    Ok(StatTable {
        columns,
        rows,
        known,
    })
}

/// Scans one data row starting at `pos`, keeping only the known columns. Hot path: find the
/// line end and any quote with memchr; walk the bytes up to the last known column; count
/// the remaining separators (vectorised). A line with a quote goes to the nom cell parser.
/// Returns the row and the position after its newline.
fn scan_row<'a>(
    text: &'a str,
    pos: usize,
    want: &[u8],
    expect: usize,
    trailing: bool,
    n: usize,
) -> Result<(RowData<'a>, usize), ParseError> {
    let base = text.as_bytes();
    let Some(len) = memchr::memchr(b'\n', &base[pos..]) else {
        return Err(fail(base, base.len(), "truncated: line has no end"));
    };
    let end = pos + len;
    let line = &base[pos..end];
    if memchr::memchr(b'"', line).is_some() {
        let mut cells = Vec::new();
        let next = parse_line(text, pos, &mut cells)?;
        return finish_slow(text, pos, next, cells, want, expect, trailing, n);
    }
    let last_known = want.iter().rposition(|&k| k != NONE).unwrap_or(0);
    let mut known: [Cow<'a, str>; 9] = Default::default();
    let mut col = 0usize;
    let mut cell_start = 0usize;
    let mut j = 0usize;
    while j < line.len() && col <= last_known {
        if line[j] == b',' {
            let k = want[col];
            if k != NONE {
                known[k as usize] = Cow::Borrowed(&text[pos + cell_start..pos + j]);
            }
            col += 1;
            cell_start = j + 1;
        }
        j += 1;
    }
    let cells = if col <= last_known {
        // the line ended inside the known columns: its last cell
        let k = want[col];
        if k != NONE {
            known[k as usize] = Cow::Borrowed(&text[pos + cell_start..end]);
        }
        col + 1
    } else {
        col + 1 + line[j..].iter().filter(|&&b| b == b',').count()
    };
    if cells != expect && !(trailing && cells == n) {
        return Err(fail(
            base,
            pos,
            format!("row has {cells} cells, header has {expect}"),
        ));
    }
    Ok((
        RowData {
            line: &text[pos..=end],
            known,
            kind: RowKind::Other(u8::MAX),
        },
        end + 1,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish_slow<'a>(
    text: &'a str,
    pos: usize,
    next: usize,
    cells: Vec<Cow<'a, str>>,
    want: &[u8],
    expect: usize,
    trailing: bool,
    n: usize,
) -> Result<(RowData<'a>, usize), ParseError> {
    let got = cells.len();
    if got != expect && !(trailing && got == n) {
        return Err(fail(
            text.as_bytes(),
            pos,
            format!("row has {got} cells, header has {expect}"),
        ));
    }
    let mut known: [Cow<'a, str>; 9] = Default::default();
    for (col, c) in cells.into_iter().enumerate() {
        if let Some(&k) = want.get(col) {
            if k != NONE {
                known[k as usize] = c;
            }
        }
    }
    Ok((
        RowData {
            line: &text[pos..next],
            known,
            kind: RowKind::Other(u8::MAX),
        },
        next,
    ))
}
