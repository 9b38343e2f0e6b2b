//! The XOR float chunk (encoding 1): delta-of-delta timestamps and XOR-compressed values.
//!
//! Layout (`tsdb/docs/format/chunks.md`, `tsdb/chunkenc/xor.go`):
//!
//! ```text
//! num_samples BE16
//! sample 0:   t0 varint (zig-zag)   | v0 as 64 raw bits
//! sample 1:   t1-t0 uvarint         | value XOR bits
//! sample n≥2: delta-of-delta bits   | value XOR bits
//! zero bits up to a byte boundary
//! ```
//!
//! The encoder reproduces Prometheus' bit stream exactly (same bucket choice for every
//! delta-of-delta, same leading-zero clamp, same "64 significant bits written as 0"), so a
//! chunk we write is byte-identical to the one Prometheus would write for the same samples.
//! The decoder accepts everything Prometheus writes, including the repeated final timestamp
//! of Thanos' counter aggregates (a negative delta-of-delta).

use super::ChunkError;
use super::bits::BitWriter;
use crate::encoding::{put_uvarint, put_varint, read_uvarint, read_varint};

/// Builds an XOR chunk sample by sample.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    w: BitWriter,
    num: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    /// Leading/trailing zeros of the current XOR window; `leading == 0xFF` means "none yet".
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    pub fn new() -> Self {
        // Two zero bytes reserve the sample count header.
        XorEncoder {
            w: BitWriter::with_bytes(vec![0, 0]),
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0xFF,
            trailing: 0,
        }
    }

    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// Encoded size so far, header included.
    pub fn len_bytes(&self) -> usize {
        self.w.len_bytes()
    }

    /// Appends a sample. Timestamps are expected to increase; like Prometheus' appender the
    /// encoder does not check it (the block writer does).
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        let bits = v.to_bits();
        match self.num {
            0 => {
                let mut buf = Vec::with_capacity(10);
                put_varint(&mut buf, t);
                for b in buf {
                    self.w.write_byte(b);
                }
                self.w.write_bits(bits, 64);
            }
            1 => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let mut buf = Vec::with_capacity(10);
                put_uvarint(&mut buf, t_delta);
                for b in buf {
                    self.w.write_byte(b);
                }
                self.write_value(bits);
                self.t_delta = t_delta;
            }
            u16::MAX => return Err(ChunkError::Full),
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.w.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.w.write_bits(0b10, 2);
                    self.w.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.w.write_bits(0b110, 3);
                    self.w.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.w.write_bits(0b1110, 4);
                    self.w.write_bits(dod as u64, 20);
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(dod as u64, 64);
                }
                self.write_value(bits);
                self.t_delta = t_delta;
            }
        }
        self.t = t;
        self.v = bits;
        self.num += 1;
        Ok(())
    }

    fn write_value(&mut self, bits: u64) {
        let delta = bits ^ self.v;
        if delta == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        // Clamped so that it fits the 5-bit field.
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != 0xFF && leading >= self.leading && trailing >= self.trailing {
            // The new significant bits fit in the current window.
            self.w.write_bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.w.write_bits(delta >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.w.write_bit(true);
        self.w.write_bits(u64::from(leading), 5);
        // 64 significant bits do not fit in 6 bits; 0 stands for 64 (0 never occurs).
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        self.w.write_bits(u64::from(sig & 0x3F), 6);
        self.w.write_bits(delta >> trailing, sig);
    }

    /// The chunk bytes so far (header included); the encoder can keep appending afterwards.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.w.to_bytes();
        out[..2].copy_from_slice(&self.num.to_be_bytes());
        out
    }

    /// Encodes `samples` into one chunk.
    pub fn encode(samples: impl IntoIterator<Item = (i64, f64)>) -> Result<Vec<u8>, ChunkError> {
        let mut e = XorEncoder::new();
        for (t, v) in samples {
            e.append(t, v)?;
        }
        Ok(e.bytes())
    }
}

/// `-(2^(n-1)-1) <= x <= 2^(n-1)`: Prometheus' asymmetric bucket range.
#[inline]
fn bit_range(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// Everything the decoder carries between samples. The hot loop copies it into locals so it
/// lives in registers, and writes it back when it stops.
///
/// The stream position is one absolute bit index. Each field is read from a 64-bit window
/// loaded at that position (one unaligned big-endian load and a shift), so there is no bit
/// buffer to refill or account for. Past the end of the data the window reads zeros, which
/// decode as valid fields; a position past the data's last bit after a sample is what says
/// the chunk was truncated.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    /// Bit position in the bit-packed data.
    bit: usize,
    t: i64,
    t_delta: u64,
    v: u64,
    leading: u32,
    trailing: u32,
}

/// Iterates the samples of an XOR chunk. Also offers [`XorIterator::decode_into`], which
/// decodes the rest of the chunk into slices in one tight loop; use it on hot paths.
#[derive(Clone, Debug)]
pub struct XorIterator<'a> {
    /// The bit-packed part of the chunk (after t0, v0 and t1's delta).
    data: &'a [u8],
    c: Cursor,
    total: u16,
    read: u16,
    /// Sample 0, parsed byte-aligned in `new`.
    first: (i64, u64),
    failed: bool,
}

impl<'a> XorIterator<'a> {
    /// Parses the header and the byte-aligned start (t0, v0, t1) of an XOR chunk.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let trunc = |total| ChunkError::Truncated { sample: 0, total };
        if data.len() < 2 {
            return Err(trunc(0));
        }
        let total = u16::from_be_bytes([data[0], data[1]]);
        let mut pos = 2;
        let mut c = Cursor {
            bit: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        };
        if total >= 1 {
            let (t0, n) = read_varint(&data[pos..]).map_err(|_| trunc(total))?;
            pos += n;
            let v0 = data.get(pos..pos + 8).ok_or(trunc(total))?;
            pos += 8;
            c.t = t0;
            c.v = u64::from_be_bytes(v0.try_into().expect("8 bytes"));
        }
        if total >= 2 {
            let (d, n) = read_uvarint(&data[pos..])
                .map_err(|_| ChunkError::Truncated { sample: 1, total })?;
            pos += n;
            c.t_delta = d;
        }
        let first = (c.t, c.v);
        Ok(XorIterator {
            data: &data[pos..],
            c,
            total,
            read: 0,
            first,
            failed: false,
        })
    }

    /// Samples in the chunk, from its header.
    pub fn num_samples(&self) -> u16 {
        self.total
    }

    /// Decodes every remaining sample, appending timestamps and values to the two vectors.
    /// On error the vectors hold the samples decoded before the corrupt one.
    pub fn decode_into(&mut self, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<(), ChunkError> {
        if self.failed {
            return Ok(());
        }
        let n = usize::from(self.total - self.read);
        let (tb, vb) = (ts.len(), vs.len());
        ts.resize(tb + n, 0);
        vs.resize(vb + n, 0.0);
        let res = self.decode_slices(&mut ts[tb..], &mut vs[vb..]);
        if let Err((done, _)) = &res {
            ts.truncate(tb + done);
            vs.truncate(vb + done);
        }
        res.map(|_| ()).map_err(|(_, e)| e)
    }

    /// Decodes up to `ts.len()` samples into the slices (which must have equal length).
    /// Returns how many were decoded, or how many were decoded before an error.
    pub fn decode_slices(
        &mut self,
        ts: &mut [i64],
        vs: &mut [f64],
    ) -> Result<usize, (usize, ChunkError)> {
        let want = ts
            .len()
            .min(vs.len())
            .min(usize::from(self.total - self.read));
        if self.failed {
            return Ok(0);
        }
        let (ts, vs) = (&mut ts[..want], &mut vs[..want]);
        let mut k = 0;
        // Sample 0 is already parsed; sample 1 has a plain delta instead of a
        // delta-of-delta. Both go through the general loop's value path below.
        while k < want && self.read < 2 {
            if self.read == 0 {
                ts[k] = self.first.0;
                vs[k] = f64::from_bits(self.first.1);
            } else {
                self.c.t = self.c.t.wrapping_add(self.c.t_delta as i64);
                if let Err(f) = decode_value_once(self.data, &mut self.c) {
                    self.failed = true;
                    return Err((k, f.into_error(1, self.total)));
                }
                ts[k] = self.c.t;
                vs[k] = f64::from_bits(self.c.v);
            }
            self.read += 1;
            k += 1;
        }
        if k == want {
            return Ok(k);
        }
        match decode_run(self.data, &mut self.c, &mut ts[k..], &mut vs[k..]) {
            Ok(()) => {
                self.read += (want - k) as u16;
                Ok(want)
            }
            Err((done, f)) => {
                let at = self.read + done as u16;
                self.failed = true;
                self.read = at;
                Err((k + done, f.into_error(at, self.total)))
            }
        }
    }
}

impl Iterator for XorIterator<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        let (mut t, mut v) = ([0i64], [0f64]);
        match self.decode_slices(&mut t, &mut v) {
            Ok(_) => Some(Ok((t[0], v[0]))),
            Err((_, e)) => Some(Err(e)),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.failed {
            0
        } else {
            usize::from(self.total - self.read)
        };
        (0, Some(n))
    }
}

/// Why one sample failed; turned into a [`ChunkError`] with the sample index by the caller.
#[derive(Clone, Copy, Debug)]
enum Fail {
    Truncated,
    Corrupt(&'static str),
}

impl Fail {
    fn into_error(self, sample: u16, total: u16) -> ChunkError {
        match self {
            Fail::Truncated => ChunkError::Truncated { sample, total },
            Fail::Corrupt(reason) => ChunkError::Corrupt {
                sample,
                total,
                reason,
            },
        }
    }
}

/// The 64 bits of `data` starting at bit `bit`, MSB first: at least 57 of them are real data
/// when the 8 bytes from `bit / 8` exist; past the end they are zeros.
#[inline(always)]
fn window(data: &[u8], bit: usize) -> u64 {
    let byte = bit >> 3;
    let w = match data.get(byte..byte + 8) {
        Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
        None => window_tail(data, byte),
    };
    w << (bit & 7)
}

/// The last bytes of the data, zero-padded to 8.
#[cold]
#[inline(never)]
fn window_tail(data: &[u8], byte: usize) -> u64 {
    let mut b = [0u8; 8];
    if byte < data.len() {
        let n = (data.len() - byte).min(8);
        b[..n].copy_from_slice(&data[byte..byte + n]);
    }
    u64::from_be_bytes(b)
}

/// Reads an `n`-bit field (1 ≤ n ≤ 64) at `bit`.
#[inline(always)]
fn field(data: &[u8], bit: usize, n: u32) -> u64 {
    if n <= 57 {
        window(data, bit) >> (64 - n)
    } else {
        // Wider than one window guarantees: the high part, then the low 32 bits.
        let hi = window(data, bit) >> (64 - (n - 32));
        let lo = window(data, bit + (n - 32) as usize) >> 32;
        (hi << 32) | lo
    }
}

/// The value of one sample: `0` keeps it, `10` XORs bits in the current window, `11` opens a
/// new window (5 bits of leading zeros, 6 bits of width, 0 meaning 64). `w` is the window at
/// `bit`, already loaded by the caller, whose first `avail` (at least 13) bits are real.
#[inline(always)]
fn decode_value(
    data: &[u8],
    w: u64,
    avail: u32,
    bit: &mut usize,
    v: &mut u64,
    trailing: &mut u32,
    width: &mut u32,
) -> Result<(), Fail> {
    if w >> 63 == 0 {
        *bit += 1;
        return Ok(());
    }
    let hdr = if (w >> 62) & 1 == 0 {
        2
    } else {
        let l = ((w >> 57) & 0x1F) as u32;
        let m = ((w >> 51) & 0x3F) as u32;
        let m = if m == 0 { 64 } else { m };
        if l + m > 64 {
            return Err(Fail::Corrupt("XOR window wider than 64 bits"));
        }
        *trailing = 64 - l - m;
        *width = m;
        13
    };
    // Usually the payload is still inside the window already loaded.
    let bits = if hdr + *width <= avail {
        (w << hdr) >> (64 - *width)
    } else {
        field(data, *bit + hdr as usize, *width)
    };
    *v ^= bits << *trailing;
    *bit += (hdr + *width) as usize;
    Ok(())
}

/// Decodes sample 1's value (its timestamp is a plain delta, handled by the caller).
fn decode_value_once(data: &[u8], c: &mut Cursor) -> Result<(), Fail> {
    let mut width = 64 - c.leading - c.trailing;
    let w = window(data, c.bit);
    decode_value(
        data,
        w,
        57,
        &mut c.bit,
        &mut c.v,
        &mut c.trailing,
        &mut width,
    )?;
    c.leading = 64 - c.trailing - width;
    if c.bit > data.len() * 8 {
        return Err(Fail::Truncated);
    }
    Ok(())
}

/// Per-stream state inside the decode loops: the cursor with the XOR window kept as
/// `(trailing, width)`, so that reusing the window costs nothing.
#[derive(Clone, Copy, Debug)]
struct Stream {
    bit: usize,
    t: i64,
    t_delta: u64,
    v: u64,
    trailing: u32,
    width: u32,
}

impl Stream {
    fn from_cursor(c: &Cursor) -> Self {
        // `leading + trailing <= 64` always holds for a window we decoded; the initial (0, 0)
        // means 64 bits.
        let width = 64 - c.leading - c.trailing;
        Stream {
            bit: c.bit,
            t: c.t,
            t_delta: c.t_delta,
            v: c.v,
            trailing: c.trailing,
            width,
        }
    }

    fn to_cursor(self) -> Cursor {
        Cursor {
            bit: self.bit,
            t: self.t,
            t_delta: self.t_delta,
            v: self.v,
            leading: 64 - self.trailing - self.width,
            trailing: self.trailing,
        }
    }
}

/// Decodes one sample n ≥ 2 of a stream.
///
/// One window load serves the delta-of-delta prefix and payload (at most 24 bits) and usually
/// the value's header and payload too; a second load is needed only when the value's bits run
/// past it. The delta-of-delta bucket is the number of leading ones (0, 10, 110, 1110; 1111
/// means a full 64-bit value), and its payload is decoded by sign extension: the range
/// `-(2^(n-1)-1) ..= 2^(n-1)` is two's complement shifted by one.
#[inline(always)]
fn step<const LZCNT: bool>(data: &[u8], total_bits: usize, s: &mut Stream) -> Result<(), Fail> {
    let w = window(data, s.bit);
    let ones = if LZCNT {
        (!w).leading_zeros()
    } else {
        u32::from(w >= 0x8000_0000_0000_0000)
            + u32::from(w >= 0xC000_0000_0000_0000)
            + u32::from(w >= 0xE000_0000_0000_0000)
            + u32::from(w >= 0xF000_0000_0000_0000)
    };
    let (dod, w, avail) = if ones < 4 {
        // Bits consumed: 1, 16, 20, 24; payload bits: 0, 14, 17, 20.
        let need = if ones == 0 { 1 } else { 12 + 4 * ones };
        let pbits = need - 1 - ones;
        let shift = 64 - pbits.max(1);
        let field = w << (ones + 1);
        let d = ((field.wrapping_sub(1u64 << shift) as i64) >> shift) + 1;
        s.bit += need as usize;
        // At least 57 - 24 = 33 real bits remain: enough for the value's 13-bit header.
        (if ones == 0 { 0 } else { d }, w << need, 57 - need)
    } else {
        let d = field(data, s.bit + 4, 64) as i64;
        s.bit += 68;
        (d, window(data, s.bit), 57)
    };
    s.t_delta = s.t_delta.wrapping_add(dod as u64);
    s.t = s.t.wrapping_add(s.t_delta as i64);
    decode_value(
        data,
        w,
        avail,
        &mut s.bit,
        &mut s.v,
        &mut s.trailing,
        &mut s.width,
    )?;
    if s.bit > total_bits {
        return Err(Fail::Truncated);
    }
    Ok(())
}

/// Decodes samples n ≥ 2 of one chunk into the slices.
///
/// Measured and rejected (CPU ns/sample for the counter/gauge/constant shapes of
/// `examples/xor_cpu.rs`; this design: 5.3/4.2/3.7): a 64-bit bit buffer refilled eight bytes
/// at a time, kept in registers (5.4/6.5/2.9: slower on wide XOR payloads); that buffer kept
/// across samples here and reloaded only when short (6.6/5.2/4.0); a fast path for the
/// two-bit "same interval, same value" sample (5.7/4.8/4.9: real timestamps jitter, so it
/// rarely hits and its branch mispredicts); decoding two chunks interleaved in one loop (no
/// change: the loop is bound by instruction count, about 50 per sample, not by latency).
fn decode_run(
    data: &[u8],
    c: &mut Cursor,
    ts: &mut [i64],
    vs: &mut [f64],
) -> Result<(), (usize, Fail)> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_bmi2() {
            // SAFETY: the CPU supports the features `decode_run_bmi2` is compiled for.
            #[allow(unsafe_code)]
            return unsafe { decode_run_bmi2(data, c, ts, vs) };
        }
    }
    decode_run_impl::<false>(data, c, ts, vs)
}

#[cfg(target_arch = "x86_64")]
fn has_bmi2() -> bool {
    std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("lzcnt")
}

/// The loop compiled for BMI2 and LZCNT: variable shifts become single `shlx`/`shrx` and the
/// prefix count one `lzcnt`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi1,bmi2,lzcnt")]
#[inline(never)]
fn decode_run_bmi2(
    data: &[u8],
    c: &mut Cursor,
    ts: &mut [i64],
    vs: &mut [f64],
) -> Result<(), (usize, Fail)> {
    decode_run_impl::<true>(data, c, ts, vs)
}

/// `LZCNT`: count the prefix with one leading-zero count (fast when the CPU has `lzcnt`)
/// rather than four compares (better than the slow `bsr` fallback).
#[inline(always)]
fn decode_run_impl<const LZCNT: bool>(
    data: &[u8],
    c: &mut Cursor,
    ts: &mut [i64],
    vs: &mut [f64],
) -> Result<(), (usize, Fail)> {
    let n = ts.len().min(vs.len());
    let (ts, vs) = (&mut ts[..n], &mut vs[..n]);
    let total_bits = data.len() * 8;
    let mut s = Stream::from_cursor(c);
    let mut k = 0;
    let mut fail = None;
    while k < n {
        if let Err(f) = step::<LZCNT>(data, total_bits, &mut s) {
            fail = Some(f);
            break;
        }
        ts[k] = s.t;
        vs[k] = f64::from_bits(s.v);
        k += 1;
    }
    *c = s.to_cursor();
    match fail {
        None => Ok(()),
        Some(f) => Err((k, f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(data: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
        XorIterator::new(data)?.collect()
    }

    fn decode_bulk(data: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        XorIterator::new(data)?.decode_into(&mut ts, &mut vs)?;
        Ok(ts.into_iter().zip(vs).collect())
    }

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    #[test]
    fn empty_and_single_sample() {
        let e = XorEncoder::new();
        assert_eq!(e.bytes(), vec![0, 0]);
        assert!(decode_all(&e.bytes()).unwrap().is_empty());
        let one = XorEncoder::encode([(1234, 5.5)]).unwrap();
        // Header, varint t0 (2 bytes), 8 value bytes, and bstream's empty trailing byte.
        assert_eq!(one.len(), 2 + 2 + 8 + 1);
        assert_eq!(*one.last().unwrap(), 0);
        assert_eq!(decode_all(&one).unwrap(), vec![(1234, 5.5)]);
        assert_eq!(decode_bulk(&one).unwrap(), vec![(1234, 5.5)]);
    }

    /// Hand-assembled bit stream for a known sequence, checking every bucket and both value
    /// paths. Bits were derived from the format description, independently of the encoder.
    #[test]
    fn known_bytes() {
        // Samples: (1000, 1.0), (2000, 1.0), (3000, 2.0)
        // header 0x0003; t0=1000 zig-zag 2000 = varint d0 0f; v0 = 3ff0000000000000;
        // t1-t0 = 1000 uvarint e8 07; v1 XOR = 0 -> bit 0;
        // sample 2: dod 0 -> bit 0; v2 = 2.0 = 0x4000000000000000, XOR with 1.0 bits =
        // 0x7ff0000000000000: lz 1, tz 52, sig 11 -> 1 1 00001 001011 11111111111
        // bits: 0 0 1 1 00001 001011 11111111111 + pad
        let bytes = XorEncoder::encode([(1000, 1.0), (2000, 1.0), (3000, 2.0)]).unwrap();
        let mut want = vec![
            0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07,
        ];
        // 0011 0000 | 1001 0111 | 1111 1111 | 1100 0000
        want.extend_from_slice(&[0b0011_0000, 0b1001_0111, 0b1111_1111, 0b1100_0000]);
        assert_eq!(bytes, want);
        assert_eq!(
            decode_all(&bytes).unwrap(),
            vec![(1000, 1.0), (2000, 1.0), (3000, 2.0)]
        );
    }

    #[test]
    fn every_dod_bucket_and_boundaries_round_trip() {
        let mut t = 1_600_000_000_000i64;
        let mut samples = vec![(t, 0.0), (t + 15_000, 1.0)];
        let mut delta = 15_000i64;
        t += 15_000;
        for dod in [
            0i64,
            1,
            -1,
            8192,
            -8191,
            8193,
            -8192,
            65536,
            -65535,
            65537,
            -65536,
            524288,
            -524287,
            524289,
            -524288,
            1 << 40,
            -(1 << 40),
            0,
            0,
        ] {
            delta += dod;
            t += delta;
            samples.push((t, samples.len() as f64));
        }
        // A repeated final timestamp, as Thanos counter aggregates write it.
        samples.push((t, 7.0));
        let bytes = XorEncoder::encode(samples.iter().copied()).unwrap();
        assert!(same(&decode_all(&bytes).unwrap(), &samples));
        assert!(same(&decode_bulk(&bytes).unwrap(), &samples));
    }

    #[test]
    fn special_values_round_trip() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let vals = [
            0.0,
            -0.0,
            1.0,
            f64::NAN,
            stale,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e-300,
            5e-324,
            12345.678,
            12345.678,
            -1.0,
        ];
        let samples: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 1000 - 3000, v))
            .collect();
        let bytes = XorEncoder::encode(samples.iter().copied()).unwrap();
        assert!(same(&decode_all(&bytes).unwrap(), &samples));
        assert!(same(&decode_bulk(&bytes).unwrap(), &samples));
    }

    #[test]
    fn full_width_xor_uses_zero_for_64_significant_bits() {
        // 1.0 XOR -1.5 has bit 63 set and bit 0 clear; pick values whose XOR has lz=tz=0.
        let a = f64::from_bits(0x0000_0000_0000_0001);
        let b = f64::from_bits(0x8000_0000_0000_0000);
        let samples = [(0, a), (1, b), (2, a), (3, b)];
        let bytes = XorEncoder::encode(samples).unwrap();
        assert!(same(&decode_all(&bytes).unwrap(), &samples));
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (i * 15_000 + 7, (i as f64).sin()))
            .collect();
        let bytes = XorEncoder::encode(samples.iter().copied()).unwrap();
        for cut in 0..bytes.len() {
            let r = decode_all(&bytes[..cut]);
            assert!(r.is_err(), "cut at {cut} decoded");
            assert!(decode_bulk(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn full_chunk_is_an_error() {
        let mut e = XorEncoder::new();
        for i in 0..u16::MAX {
            e.append(i64::from(i), 1.0).unwrap();
        }
        assert_eq!(e.append(70_000, 1.0), Err(ChunkError::Full));
    }

    proptest::proptest! {
        #[test]
        fn round_trip_random(
            start in -1i64<<50..1i64<<50,
            deltas in proptest::collection::vec(0i64..200_000, 0..300),
            jitter in proptest::collection::vec(-5000i64..5000, 300),
            vals in proptest::collection::vec(proptest::num::f64::ANY, 301),
            repeat in proptest::collection::vec(proptest::bool::ANY, 301),
        ) {
            let mut t = start;
            let mut samples = vec![(t, vals[0])];
            for (i, d) in deltas.iter().enumerate() {
                t += d + jitter[i].max(-d);
                let v = if repeat[i] { samples[i].1 } else { vals[i + 1] };
                samples.push((t, v));
            }
            let bytes = XorEncoder::encode(samples.iter().copied()).unwrap();
            let it = decode_all(&bytes).unwrap();
            proptest::prop_assert!(same(&it, &samples));
            let bulk = decode_bulk(&bytes).unwrap();
            proptest::prop_assert!(same(&bulk, &samples));
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode_all(&data);
            let _ = decode_bulk(&data);
        }
    }
}
