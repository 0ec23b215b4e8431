//! A small msgpack writer/reader with go-msgpack's quirks (gossip-wire.md §2).
//!
//! Writer: maps and arrays in their smallest form, strings *and* byte fields in the old
//! "raw" str family (fixstr / str16 / str32, never str8 or bin), unsigned forms for
//! non-negative integers, nil for absent values.
//!
//! Reader: accepts everything a Go node may send: str8 and bin for strings/bytes, an
//! array of small integers for bytes, signed and unsigned integer forms, nil as the zero
//! value. It never allocates from an announced length before checking the bytes are there.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::{Result, WireError};

/// Deepest nesting the reader skips through (unknown fields); deeper input is rejected.
pub(crate) const MAX_SKIP_DEPTH: u32 = 32;

// ------------------------------------------------------------------ writer

/// Map header with `n` entries.
pub(crate) fn w_map(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Array header with `n` entries.
pub(crate) fn w_array(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= 0xffff {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Raw string (used for Go `string` and `[]byte` alike): fixstr, str16 or str32.
pub(crate) fn w_raw(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// A string.
pub(crate) fn w_str(out: &mut Vec<u8>, s: &str) {
    w_raw(out, s.as_bytes());
}

/// An IP address as 4 or 16 raw bytes.
pub(crate) fn w_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => w_raw(out, &v4.octets()),
        IpAddr::V6(v6) => w_raw(out, &v6.octets()),
    }
}

/// Optional bytes: `None` is nil.
pub(crate) fn w_opt_raw(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => w_raw(out, b),
        None => out.push(0xc0),
    }
}

/// Unsigned integer in its smallest unsigned form.
pub(crate) fn w_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
    } else if v <= 0xff {
        out.push(0xcc);
        out.push(v as u8);
    } else if v <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Signed integer as the old go-msgpack writes it: unsigned forms when non-negative,
/// the smallest signed form otherwise.
pub(crate) fn w_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        w_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        out.push(0xd0);
        out.push(v as i8 as u8);
    } else if v >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Boolean.
pub(crate) fn w_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xc3 } else { 0xc2 });
}

/// nil.
pub(crate) fn w_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

// ------------------------------------------------------------------ reader

/// A cursor over msgpack bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// An integer as read, before range checks.
#[derive(Debug, Clone, Copy)]
enum Int {
    U(u64),
    I(i64),
}

impl<'a> Reader<'a> {
    /// Reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread rest.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Next byte without consuming it.
    pub(crate) fn peek(&self) -> Result<u8> {
        self.buf.get(self.pos).copied().ok_or(WireError::Truncated)
    }

    fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    /// Consume exactly `n` bytes (checked before anything is allocated).
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(WireError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64> {
        let s = self.take(n)?;
        Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
    }

    /// If the next value is nil, consume it and return true.
    pub(crate) fn nil(&mut self) -> Result<bool> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Map header; nil reads as an empty map.
    pub(crate) fn map_len(&mut self, field: &'static str) -> Result<usize> {
        let m = self.byte()?;
        let n = match m {
            0x80..=0x8f => (m & 0x0f) as usize,
            0xde => self.be(2)? as usize,
            0xdf => self.be(4)? as usize,
            0xc0 => 0,
            _ => {
                return Err(WireError::WrongType {
                    field,
                    expected: "map",
                    marker: m,
                })
            }
        };
        // each entry needs at least two bytes
        if n > self.remaining() / 2 {
            return Err(WireError::Truncated);
        }
        Ok(n)
    }

    /// Array header; `None` for nil.
    pub(crate) fn array_len(&mut self, field: &'static str) -> Result<Option<usize>> {
        let m = self.byte()?;
        let n = match m {
            0x90..=0x9f => (m & 0x0f) as usize,
            0xdc => self.be(2)? as usize,
            0xdd => self.be(4)? as usize,
            0xc0 => return Ok(None),
            _ => {
                return Err(WireError::WrongType {
                    field,
                    expected: "array",
                    marker: m,
                })
            }
        };
        // each element needs at least one byte
        if n > self.remaining() {
            return Err(WireError::Truncated);
        }
        Ok(Some(n))
    }

    /// Raw bytes of the str family (fixstr/str8/str16/str32), optionally also bin.
    fn raw(&mut self, field: &'static str, allow_bin: bool) -> Result<Option<&'a [u8]>> {
        let m = self.peek()?;
        let n = match m {
            0xa0..=0xbf => {
                self.pos += 1;
                (m & 0x1f) as usize
            }
            0xd9..=0xdb => {
                self.pos += 1;
                let w = 1usize << (m - 0xd9);
                self.be(w)? as usize
            }
            0xc4..=0xc6 if allow_bin => {
                self.pos += 1;
                let w = 1usize << (m - 0xc4);
                self.be(w)? as usize
            }
            0xc0 => {
                self.pos += 1;
                return Ok(None);
            }
            _ => {
                return Err(WireError::WrongType {
                    field,
                    expected: if allow_bin { "bytes" } else { "string" },
                    marker: m,
                })
            }
        };
        Ok(Some(self.take(n)?))
    }

    /// A map key (str family, bin tolerated).
    pub(crate) fn key(&mut self) -> Result<&'a [u8]> {
        match self.raw("map key", true)? {
            Some(k) => Ok(k),
            None => Err(WireError::BadMsgpack {
                field: "map key",
                reason: "nil key",
            }),
        }
    }

    /// A Go `string`: str family; nil is "".
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String> {
        match self.raw(field, false)? {
            Some(b) => {
                std::str::from_utf8(b)
                    .map(str::to_owned)
                    .map_err(|_| WireError::BadMsgpack {
                        field,
                        reason: "string is not UTF-8",
                    })
            }
            None => Ok(String::new()),
        }
    }

    /// A Go `[]byte`: str family, bin family or an array of small ints; `None` for nil.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Option<Cow<'a, [u8]>>> {
        let m = self.peek()?;
        if matches!(m, 0x90..=0x9f | 0xdc | 0xdd) {
            let n = self.array_len(field)?.unwrap_or(0);
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let x = self.uint(field)?;
                if x > 255 {
                    return Err(WireError::BadMsgpack {
                        field,
                        reason: "byte array element > 255",
                    });
                }
                v.push(x as u8);
            }
            return Ok(Some(Cow::Owned(v)));
        }
        Ok(self.raw(field, true)?.map(Cow::Borrowed))
    }

    /// `[]byte` as an owned vector; nil is empty.
    pub(crate) fn byte_vec(&mut self, field: &'static str) -> Result<Vec<u8>> {
        Ok(self.bytes(field)?.map(Cow::into_owned).unwrap_or_default())
    }

    /// `[]byte` keeping the nil/empty distinction.
    pub(crate) fn opt_byte_vec(&mut self, field: &'static str) -> Result<Option<Vec<u8>>> {
        Ok(self.bytes(field)?.map(Cow::into_owned))
    }

    /// `net.IP`: 4 or 16 bytes; `None` for nil or empty.
    pub(crate) fn ip(&mut self, field: &'static str) -> Result<Option<IpAddr>> {
        let b = self.bytes(field)?;
        match b.as_deref() {
            None | Some([]) => Ok(None),
            Some(b) if b.len() == 4 => Ok(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))),
            Some(b) if b.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                Ok(Some(IpAddr::V6(Ipv6Addr::from(a))))
            }
            Some(_) => Err(WireError::BadMsgpack {
                field,
                reason: "IP address must be 4 or 16 bytes",
            }),
        }
    }

    fn int(&mut self, field: &'static str) -> Result<Int> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Int::U(m as u64),
            0xe0..=0xff => Int::I(m as i8 as i64),
            0xcc => Int::U(self.be(1)?),
            0xcd => Int::U(self.be(2)?),
            0xce => Int::U(self.be(4)?),
            0xcf => Int::U(self.be(8)?),
            0xd0 => Int::I(self.be(1)? as u8 as i8 as i64),
            0xd1 => Int::I(self.be(2)? as u16 as i16 as i64),
            0xd2 => Int::I(self.be(4)? as u32 as i32 as i64),
            0xd3 => Int::I(self.be(8)? as i64),
            0xc0 => Int::U(0),
            _ => {
                return Err(WireError::WrongType {
                    field,
                    expected: "integer",
                    marker: m,
                })
            }
        })
    }

    /// Any integer form whose value is non-negative; nil is 0.
    pub(crate) fn uint(&mut self, field: &'static str) -> Result<u64> {
        match self.int(field)? {
            Int::U(v) => Ok(v),
            Int::I(v) if v >= 0 => Ok(v as u64),
            Int::I(_) => Err(WireError::BadMsgpack {
                field,
                reason: "negative value for an unsigned field",
            }),
        }
    }

    /// Unsigned integer that must fit in `max`.
    pub(crate) fn uint_max(&mut self, field: &'static str, max: u64) -> Result<u64> {
        let v = self.uint(field)?;
        if v > max {
            return Err(WireError::BadMsgpack {
                field,
                reason: "integer out of range",
            });
        }
        Ok(v)
    }

    /// `uint8`.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.uint_max(field, u8::MAX as u64)? as u8)
    }

    /// `uint16`.
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(self.uint_max(field, u16::MAX as u64)? as u16)
    }

    /// `uint32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(self.uint_max(field, u32::MAX as u64)? as u32)
    }

    /// `int`/`int64`: any integer form that fits an i64.
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64> {
        match self.int(field)? {
            Int::I(v) => Ok(v),
            Int::U(v) => i64::try_from(v).map_err(|_| WireError::BadMsgpack {
                field,
                reason: "integer out of range",
            }),
        }
    }

    /// `bool`; nil is false.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool> {
        let m = self.byte()?;
        match m {
            0xc2 | 0xc0 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(WireError::WrongType {
                field,
                expected: "bool",
                marker: m,
            }),
        }
    }

    /// Skip one value of any type (unknown fields), with bounded nesting.
    pub(crate) fn skip(&mut self) -> Result<()> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: u32) -> Result<()> {
        if depth > MAX_SKIP_DEPTH {
            return Err(WireError::TooDeep);
        }
        let m = self.byte()?;
        let (fixed, items): (usize, usize) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * (m & 0x0f) as usize),
            0x90..=0x9f => (0, (m & 0x0f) as usize),
            0xa0..=0xbf => ((m & 0x1f) as usize, 0),
            0xc4 | 0xd9 => (self.be(1)? as usize, 0),
            0xc5 | 0xda => (self.be(2)? as usize, 0),
            0xc6 | 0xdb => (self.be(4)? as usize, 0),
            0xc7 => (self.be(1)? as usize + 1, 0),
            0xc8 => (self.be(2)? as usize + 1, 0),
            0xc9 => (self.be(4)? as usize + 1, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, self.be(2)? as usize),
            0xdd => (0, self.be(4)? as usize),
            0xde => (0, 2 * self.be(2)? as usize),
            0xdf => (0, 2 * self.be(4)? as usize),
            0xc1 => {
                return Err(WireError::BadMsgpack {
                    field: "value",
                    reason: "reserved marker 0xc1",
                })
            }
        };
        self.take(fixed)?;
        if items > self.remaining() {
            return Err(WireError::Truncated);
        }
        for _ in 0..items {
            self.skip_depth(depth + 1)?;
        }
        Ok(())
    }
}
