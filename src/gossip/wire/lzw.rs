//! LZW exactly as Go's `compress/lzw` with LSB bit order and literal width 8
//! (gossip-wire.md §7): 9..12-bit codes, clear 256, end 257, no early change, the
//! writer emits a clear code first, a clear code when the table fills, an end code last.

use super::error::{Result, WireError};

const CLEAR: u32 = 256;
const EOF: u32 = 257;
const MAX_WIDTH: u32 = 12;
const MAX_CODE: u32 = (1 << MAX_WIDTH) - 1; // 4095
/// Go's hash table size. The table is only a map (key → code), so a smaller one gives the
/// same output; small inputs use a smaller table (load factor ≤ 1/2) to avoid clearing
/// 64 KiB per packet.
const MAX_TABLE_SIZE: usize = 1 << 14;
const INVALID_ENTRY: u32 = 0;

struct BitWriter {
    out: Vec<u8>,
    bits: u32,
    nbits: u32,
}

impl BitWriter {
    fn put(&mut self, code: u32, width: u32) {
        self.bits |= code << self.nbits;
        self.nbits += width;
        while self.nbits >= 8 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits -= 8;
        }
    }
}

/// Compress like Go's `lzw.NewWriter(w, lzw.LSB, 8)` followed by one `Write` and `Close`
/// (byte-identical output).
pub fn lzw_compress(data: &[u8]) -> Vec<u8> {
    let mut w = BitWriter {
        out: Vec::with_capacity(data.len() / 2 + 8),
        bits: 0,
        nbits: 0,
    };
    let mut width = 9u32;
    let mut hi = EOF;
    let mut overflow = 1u32 << width;
    // key = code << 8 | literal; entry = key << 12 | code (key fits in 20 bits)
    let table_size = (data.len() * 2)
        .next_power_of_two()
        .clamp(256, MAX_TABLE_SIZE);
    let table_mask = table_size as u32 - 1;
    let mut table = vec![INVALID_ENTRY; table_size];

    w.put(CLEAR, width);
    let Some((&first, rest)) = data.split_first() else {
        w.put(EOF, width);
        if w.nbits > 0 {
            w.out.push(w.bits as u8);
        }
        return w.out;
    };

    // Returns false when the table ran out of codes (and was reset).
    let inc_hi = |w: &mut BitWriter,
                  width: &mut u32,
                  hi: &mut u32,
                  overflow: &mut u32,
                  table: &mut [u32]|
     -> bool {
        *hi += 1;
        if *hi == *overflow {
            *width += 1;
            *overflow <<= 1;
        }
        if *hi == MAX_CODE {
            w.put(CLEAR, *width);
            *width = 9;
            *hi = EOF;
            *overflow = 1 << 9;
            table.fill(INVALID_ENTRY);
            return false;
        }
        true
    };

    let mut code = first as u32;
    'outer: for &x in rest {
        let literal = x as u32;
        let key = (code << 8) | literal;
        let mut hash = ((key >> 12) ^ key) & table_mask;
        let mut h = hash;
        loop {
            let t = table[h as usize];
            if t == INVALID_ENTRY {
                break;
            }
            if key == t >> 12 {
                code = t & MAX_CODE;
                continue 'outer;
            }
            h = (h + 1) & table_mask;
        }
        w.put(code, width);
        code = literal;
        if !inc_hi(&mut w, &mut width, &mut hi, &mut overflow, &mut table) {
            continue;
        }
        loop {
            if table[hash as usize] == INVALID_ENTRY {
                table[hash as usize] = (key << 12) | hi;
                break;
            }
            hash = (hash + 1) & table_mask;
        }
    }
    w.put(code, width);
    inc_hi(&mut w, &mut width, &mut hi, &mut overflow, &mut table);
    w.put(EOF, width);
    if w.nbits > 0 {
        w.out.push(w.bits as u8);
    }
    w.out
}

/// Decompress Go-compatible LZW (LSB, 8-bit literals). Fails on invalid codes, on a
/// missing end code, and when the output would exceed `max_out` bytes.
pub fn lzw_decompress(data: &[u8], max_out: usize) -> Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(2).min(max_out));
    let mut prefix = [0u16; 1 << MAX_WIDTH];
    let mut suffix = [0u8; 1 << MAX_WIDTH];
    let mut scratch = [0u8; 1 << MAX_WIDTH];

    let mut bits: u32 = 0;
    let mut nbits: u32 = 0;
    let mut pos = 0usize;
    let mut width = 9u32;
    let mut hi = EOF;
    let mut overflow = 1u32 << width;
    let mut last: Option<u32> = None;

    loop {
        while nbits < width {
            let Some(&b) = data.get(pos) else {
                return Err(WireError::BadLzw("unexpected end of data (no end code)"));
            };
            bits |= (b as u32) << nbits;
            pos += 1;
            nbits += 8;
        }
        let code = bits & ((1 << width) - 1);
        bits >>= width;
        nbits -= width;

        if code < CLEAR {
            push_checked(&mut out, &[code as u8], max_out)?;
            if let Some(l) = last {
                suffix[hi as usize] = code as u8;
                prefix[hi as usize] = l as u16;
            }
        } else if code == CLEAR {
            width = 9;
            hi = EOF;
            overflow = 1 << width;
            last = None;
            continue;
        } else if code == EOF {
            return Ok(out);
        } else if code <= hi {
            // Expand into scratch from the end backwards.
            let mut i = scratch.len();
            let mut c = code;
            if let (true, Some(l)) = (code == hi, last) {
                // hi expands to last's expansion + its first byte.
                let mut f = l;
                while f >= CLEAR {
                    f = prefix[f as usize] as u32;
                }
                i -= 1;
                scratch[i] = f as u8;
                c = l;
            }
            while c >= CLEAR {
                if i == 0 {
                    return Err(WireError::BadLzw("code chain too long"));
                }
                i -= 1;
                scratch[i] = suffix[c as usize];
                c = prefix[c as usize] as u32;
            }
            if i == 0 {
                return Err(WireError::BadLzw("code chain too long"));
            }
            i -= 1;
            scratch[i] = c as u8;
            push_checked(&mut out, &scratch[i..], max_out)?;
            if let Some(l) = last {
                suffix[hi as usize] = c as u8;
                prefix[hi as usize] = l as u16;
            }
        } else {
            return Err(WireError::BadLzw("invalid code"));
        }
        last = Some(code);
        hi += 1;
        if hi >= overflow {
            if width == MAX_WIDTH {
                last = None;
                hi -= 1;
            } else {
                width += 1;
                overflow = 1 << width;
            }
        }
    }
}

fn push_checked(out: &mut Vec<u8>, s: &[u8], max_out: usize) -> Result<()> {
    if out.len() + s.len() > max_out {
        return Err(WireError::TooLarge {
            what: "decompressed data",
            len: (out.len() + s.len()) as u64,
            max: max_out as u64,
        });
    }
    out.extend_from_slice(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzw_round_trips_text_and_table_resets() {
        let mut data = Vec::new();
        for i in 0..20000u32 {
            data.push((i.wrapping_mul(2654435761) >> 13) as u8 % 7 + b'a');
        }
        let c = lzw_compress(&data);
        assert_eq!(lzw_decompress(&c, 1 << 20).unwrap(), data);
        assert_eq!(lzw_decompress(&lzw_compress(b""), 10).unwrap(), b"");
        assert_eq!(lzw_decompress(&lzw_compress(b"x"), 10).unwrap(), b"x");
    }

    /// A writer that never clears (allowed by the format, not what Go writes): once the
    /// 12-bit table is full it keeps emitting codes without adding entries.
    fn compress_without_clear(data: &[u8]) -> Vec<u8> {
        use std::collections::HashMap;
        let mut w = BitWriter {
            out: Vec::new(),
            bits: 0,
            nbits: 0,
        };
        let (mut width, mut hi, mut overflow) = (9u32, EOF, 512u32);
        let mut table: HashMap<(u32, u8), u32> = HashMap::new();
        w.put(CLEAR, width);
        let mut code = data[0] as u32;
        for &x in &data[1..] {
            if let Some(&c) = table.get(&(code, x)) {
                code = c;
                continue;
            }
            w.put(code, width);
            if hi < MAX_CODE {
                hi += 1;
                if hi == overflow {
                    width += 1;
                    overflow <<= 1;
                }
                table.insert((code, x), hi);
            }
            code = x as u32;
        }
        w.put(code, width);
        if hi < MAX_CODE {
            hi += 1;
            if hi == overflow {
                width += 1;
            }
        }
        w.put(EOF, width);
        if w.nbits > 0 {
            w.out.push(w.bits as u8);
        }
        w.out
    }

    #[test]
    fn lzw_reads_a_full_table_without_clear_codes_like_go() {
        let mut data = Vec::new();
        let mut x = 12345u32;
        for _ in 0..60000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            data.push(b'a' + ((x >> 16) % 5) as u8);
        }
        let c = compress_without_clear(&data);
        assert_eq!(lzw_decompress(&c, 1 << 20).unwrap(), data);
    }

    #[test]
    fn lzw_output_larger_than_the_limit_is_refused() {
        let c = lzw_compress(&[0u8; 1000]);
        assert_eq!(lzw_decompress(&c, 999).unwrap_err().kind(), "too_large");
    }

    #[test]
    fn lzw_without_end_code_is_refused() {
        let c = lzw_compress(b"hello hello hello");
        assert_eq!(
            lzw_decompress(&c[..c.len() - 2], 1000).unwrap_err().kind(),
            "bad_lzw"
        );
    }
}
