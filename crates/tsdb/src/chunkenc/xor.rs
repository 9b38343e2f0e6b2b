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

    /// Decodes whole XOR chunks, appending their samples to `ts` and `vs` chunk after chunk: the
    /// same result as [`XorIterator::decode_into`] on each chunk in turn, faster for many
    /// chunks. When the CPU has AVX-512 (F, CD, BW, VBMI2), groups of sixteen or eight chunks
    /// are decoded in lockstep, one chunk per 64-bit vector lane, so that one instruction
    /// advances eight bit streams and their dependency chains overlap; the chunks left over
    /// are decoded one by one. The lockstep part of a group stops at its shortest chunk, so
    /// chunks of similar sample counts (as a series' chunks usually are) gain the most.
    ///
    /// On error, returns the index of the first chunk that failed and its error; the vectors
    /// then hold what decoding the chunks one by one leaves: the samples of the chunks before
    /// it and those of the failing chunk decoded before the error.
    pub fn decode_chunks_into(
        chunks: &[&[u8]],
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<(), (usize, ChunkError)> {
        #[cfg(target_arch = "x86_64")]
        let i = wide::decode_groups_into(chunks, ts, vs)?;
        #[cfg(not(target_arch = "x86_64"))]
        let i = 0;
        for (j, chunk) in chunks.iter().enumerate().skip(i) {
            XorIterator::new(chunk)
                .and_then(|mut it| it.decode_into(ts, vs))
                .map_err(|e| (j, e))?;
        }
        Ok(())
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
/// change).
///
/// This loop is bound by its dependency chain through the bit position (load, shift, prefix
/// count, field widths, next position: about 15 cycles with its branches predicted; the core
/// runs near 4 GHz, so 3 ns is 12 cycles) plus, for counters, the mispredicted `10`/`11`
/// value-header branch. Callgrind counts 87/95/66 instructions per sample. Measured and
/// rejected in a second session (one session, this machine; this design then: 5.7/4.4/3.8):
/// a branch-free step (selects for both headers, the payload cut from a 128-bit block, no
/// bounds checks while 16 bytes remain, a zero-padded copy for the tail, rare cases redone
/// here): 5.8/5.8/5.8, since the selects lengthen the chain to about 23 cycles and register
/// pressure made it about 100 instructions per sample; the same with the value header still
/// branchy: 5.9/4.5/3.8 (the bounds checks were not what cost); `movbe` loads: no change; two
/// chunks interleaved with the branch-free step: 4.9/4.9/4.9; splitting it into a pass that
/// stores raw delta-of-deltas and XORs and a pass that sums them: no change. What does reach
/// the goal is decoding many chunks at once in vector lanes: [`XorIterator::decode_chunks_into`]
/// and the `wide` module.
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

/// Chunks decoded eight or sixteen at a time, one per 64-bit lane of one or two AVX-512
/// vectors, with branch-free arithmetic. The bit streams are independent, so their dependency
/// chains overlap, and one vector instruction does the work of eight scalar ones.
///
/// Each group's data is copied into one buffer, each chunk followed by 16 zero bytes, so that
/// a lane can read 16 bytes from any sample that starts inside its chunk; the loop runs while
/// every lane's next sample does. A lane that meets what the arithmetic does not decode (the
/// 64-bit timestamp bucket, a corrupt window) or that ends past its data (truncated) is
/// marked, and its chunk is decoded again by [`decode_run`], which reports the exact error.
///
/// Measured on the way (CPU ns/sample for counter/gauge/constant, `decode_chunks_into` in
/// `examples/xor_cpu.rs`; one session, this machine, each step against the previous one in
/// the same minute): eight lanes, results copied out lane by lane and each chunk's last 16
/// bytes decoded by [`decode_run`]: 3.5/3.7/3.6; zero padding, so that the lanes run to the
/// end: 3.4/3.5/3.3; results written with scatter stores: 3.0/3.1/2.9 (rows stored and
/// transposed in a pass after the loop instead: 3.1/3.3/3.1, rejected); two vectors in one
/// loop: 2.8/3.0/2.8; funnel shifts (VBMI2) and the width kept as a shift count: 2.6/2.7/2.5;
/// instead of scatters, each vector's last eight rows transposed in registers and stored as
/// columns: 2.3/2.6/2.3; the timestamp's widths and shifts looked up by a permute:
/// 2.2/2.4/2.1; four vectors (32 lanes): no change (rejected). The loop is about 65
/// instructions per eight samples; around a quarter of the time is per-chunk work outside it
/// (headers, samples 0 and 1, copying the data, zeroing the output). Valgrind does not run
/// AVX-512, so there are no callgrind counts for this path.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{ChunkError, Stream, XorIterator, decode_run};
    use std::arch::x86_64::*;

    /// 64-bit lanes in one vector: the smaller group of chunks decoded together.
    pub(super) const LANES: usize = 8;
    /// The larger group: two vectors in the same loop, for more independent chains in flight.
    pub(super) const GROUP: usize = 2 * LANES;
    /// Zero bytes after each chunk's data in the shared buffer: a sample starting in the
    /// data's last byte reads 16 bytes from there.
    const PAD: usize = 16;

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512cd")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vbmi2")
    }

    /// Decodes the leading groups of [`GROUP`] and [`LANES`] chunks of `chunks`, if the CPU
    /// has the features; returns how many chunks it decoded, for the caller to decode the rest
    /// one by one. Errors are as for [`XorIterator::decode_chunks_into`].
    pub(super) fn decode_groups_into(
        chunks: &[&[u8]],
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<usize, (usize, ChunkError)> {
        let mut i = 0;
        if !available() {
            return Ok(i);
        }
        let mut scratch = Scratch::default();
        for size in [GROUP, LANES] {
            while i + size <= chunks.len() {
                let group = &chunks[i..i + size];
                if !decode_group_into(group, ts, vs, &mut scratch) {
                    // Something is wrong with one of them: decode them one by one for the
                    // exact error and partial output.
                    for (j, chunk) in group.iter().enumerate() {
                        XorIterator::new(chunk)
                            .and_then(|mut it| it.decode_into(ts, vs))
                            .map_err(|e| (i + j, e))?;
                    }
                }
                i += size;
            }
        }
        Ok(i)
    }

    /// A buffer reused from group to group: the chunks' bit-packed data, one after the other,
    /// each followed by [`PAD`] zero bytes.
    #[derive(Default, Debug)]
    pub(super) struct Scratch {
        buf: Vec<u8>,
    }

    /// Decodes [`LANES`] or [`GROUP`] whole chunks, appending their samples chunk after chunk.
    /// Returns `false`, with the vectors as they were, if any of them fails to decode (or for
    /// another number of chunks).
    pub(super) fn decode_group_into(
        chunks: &[&[u8]],
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
        scratch: &mut Scratch,
    ) -> bool {
        if chunks.len() != LANES && chunks.len() != GROUP {
            return false;
        }
        let mut its = Vec::with_capacity(chunks.len());
        for c in chunks {
            match XorIterator::new(c) {
                Ok(it) => its.push(it),
                Err(_) => return false,
            }
        }
        let (tb, vb) = (ts.len(), vs.len());
        let total: usize = its.iter().map(|it| usize::from(it.total)).sum();
        ts.resize(tb + total, 0);
        vs.resize(vb + total, 0.0);
        let ok = decode_group(&mut its, &mut ts[tb..], &mut vs[vb..], scratch);
        if !ok {
            ts.truncate(tb);
            vs.truncate(vb);
        }
        ok
    }

    fn decode_group(
        its: &mut [XorIterator<'_>],
        ts: &mut [i64],
        vs: &mut [f64],
        scratch: &mut Scratch,
    ) -> bool {
        // Lane i's samples n ≥ 2 go to `off[i]..off[i] + cnt[i]`; the iterator decodes the
        // first two.
        let (mut off, mut cnt) = ([0usize; GROUP], [0usize; GROUP]);
        let mut pos = 0;
        for (i, it) in its.iter_mut().enumerate() {
            let n = usize::from(it.total);
            let h = n.min(2);
            if it
                .decode_slices(&mut ts[pos..pos + h], &mut vs[pos..pos + h])
                .is_err()
            {
                return false;
            }
            (off[i], cnt[i]) = (pos + h, n - h);
            pos += n;
        }
        let n = cnt[..its.len()].iter().copied().min().unwrap_or(0);
        let mut k = 0;
        let mut bad = 0u32;
        if n > 0 {
            scratch.buf.clear();
            let (mut base, mut len) = ([0usize; GROUP], [0usize; GROUP]);
            for (i, it) in its.iter().enumerate() {
                base[i] = scratch.buf.len();
                len[i] = it.data.len();
                scratch.buf.extend_from_slice(it.data);
                // Reads past the data see zeros, as `window` makes them.
                scratch.buf.extend_from_slice(&[0; PAD]);
            }
            let mut s = [Stream::from_cursor(&its[0].c); GROUP];
            for (st, it) in s.iter_mut().zip(its.iter()) {
                *st = Stream::from_cursor(&it.c);
            }
            let lanes = Lanes {
                buf: &scratch.buf,
                base: &base,
                len: &len,
                off: &off,
            };
            // SAFETY: `available()` returned true, so the CPU has these features.
            #[allow(unsafe_code)]
            {
                (k, bad) = if its.len() == GROUP {
                    unsafe { run::<2>(&lanes, &mut s, ts, vs, n) }
                } else {
                    unsafe { run::<1>(&lanes, &mut s, ts, vs, n) }
                };
            }
            for (i, it) in its.iter_mut().enumerate() {
                // A lane that met a case it does not decode starts over (its cursor is still
                // the one after sample 1), one sample at a time.
                if bad & (1 << i) == 0 {
                    it.c = s[i].to_cursor();
                }
            }
        }
        for (i, it) in its.iter_mut().enumerate() {
            let done = if bad & (1 << i) == 0 { k } else { 0 };
            let out = off[i] + done..off[i] + cnt[i];
            if decode_run(it.data, &mut it.c, &mut ts[out.clone()], &mut vs[out]).is_err() {
                return false;
            }
        }
        true
    }

    /// Eight 64-bit lanes from `a[j * 8..]`.
    #[target_feature(enable = "avx512f")]
    fn lanes(a: &[u64; GROUP], j: usize) -> __m512i {
        let v: &[u64; LANES] = a[j * LANES..][..LANES].try_into().expect("8 lanes");
        // SAFETY: reads the 64 bytes of `v`.
        #[allow(unsafe_code)]
        unsafe {
            _mm512_loadu_si512(v.as_ptr().cast())
        }
    }

    /// The 64-bit types the outputs hold: any bits are a valid value.
    pub(super) trait Word: Copy {
        fn from_bits(x: u64) -> Self;
    }

    impl Word for i64 {
        fn from_bits(x: u64) -> Self {
            x as i64
        }
    }

    impl Word for f64 {
        fn from_bits(x: u64) -> Self {
            f64::from_bits(x)
        }
    }

    /// Transposes an 8×8 tile of 64-bit values (row `r` in vector `r`), with three rounds of
    /// two-source permutes that swap 1×1, then 2×2, then 4×4 blocks.
    #[target_feature(enable = "avx512f")]
    fn transpose(r: &[__m512i; LANES]) -> [__m512i; LANES] {
        let idx = |a: [i64; 8]| _mm512_set_epi64(a[7], a[6], a[5], a[4], a[3], a[2], a[1], a[0]);
        let p = |a, i, b| _mm512_permutex2var_epi64(a, i, b);
        let (lo, hi) = (
            idx([0, 8, 2, 10, 4, 12, 6, 14]),
            idx([1, 9, 3, 11, 5, 13, 7, 15]),
        );
        let u = [
            p(r[0], lo, r[1]),
            p(r[0], hi, r[1]),
            p(r[2], lo, r[3]),
            p(r[2], hi, r[3]),
            p(r[4], lo, r[5]),
            p(r[4], hi, r[5]),
            p(r[6], lo, r[7]),
            p(r[6], hi, r[7]),
        ];
        let (lo, hi) = (
            idx([0, 1, 8, 9, 4, 5, 12, 13]),
            idx([2, 3, 10, 11, 6, 7, 14, 15]),
        );
        let v = [
            p(u[0], lo, u[2]),
            p(u[1], lo, u[3]),
            p(u[0], hi, u[2]),
            p(u[1], hi, u[3]),
            p(u[4], lo, u[6]),
            p(u[5], lo, u[7]),
            p(u[4], hi, u[6]),
            p(u[5], hi, u[7]),
        ];
        let (lo, hi) = (
            idx([0, 1, 2, 3, 8, 9, 10, 11]),
            idx([4, 5, 6, 7, 12, 13, 14, 15]),
        );
        [
            p(v[0], lo, v[4]),
            p(v[1], lo, v[5]),
            p(v[2], lo, v[6]),
            p(v[3], lo, v[7]),
            p(v[0], hi, v[4]),
            p(v[1], hi, v[5]),
            p(v[2], hi, v[6]),
            p(v[3], hi, v[7]),
        ]
    }

    /// Stores column `i` (lane `i`'s samples `at..at + 8`) at `out[offs[i] + at..]`.
    #[target_feature(enable = "avx512f")]
    fn store_columns<T: Word>(cols: &[__m512i; LANES], out: &mut [T], offs: &[usize], at: usize) {
        for (col, &o) in cols.iter().zip(offs) {
            let dst: &mut [T; LANES] = (&mut out[o + at..o + at + LANES])
                .try_into()
                .expect("8 samples");
            // SAFETY: `dst` is eight 64-bit values, 64 bytes, and any bits are a valid `T`.
            #[allow(unsafe_code)]
            unsafe {
                _mm512_storeu_si512(dst.as_mut_ptr().cast(), *col);
            }
        }
    }

    /// Stores rows `at..at + rows.len()` (fewer than eight) lane by lane.
    #[target_feature(enable = "avx512f")]
    fn store_rows<T: Word>(rows: &[__m512i], out: &mut [T], offs: &[usize], at: usize) {
        for (r, row) in rows.iter().enumerate() {
            let mut a = [0u64; LANES];
            // SAFETY: writes the 64 bytes of `a`.
            #[allow(unsafe_code)]
            unsafe {
                _mm512_storeu_si512(a.as_mut_ptr().cast(), *row);
            }
            for (&x, &o) in a.iter().zip(offs) {
                out[o + at + r] = T::from_bits(x);
            }
        }
    }

    /// Where the lanes' data and output are: lane `i`'s bit-packed data is
    /// `buf[base[i]..base[i] + len[i]]`, followed by [`PAD`] zero bytes, and its sample `k` goes
    /// to index `off[i] + k` of the outputs.
    struct Lanes<'a> {
        buf: &'a [u8],
        base: &'a [usize; GROUP],
        len: &'a [usize; GROUP],
        off: &'a [usize; GROUP],
    }

    /// The lockstep loop over the first `8 * SETS` lanes: lane `i` decodes samples n ≥ 2 from
    /// stream `s[i]`, for `k < n`, while every lane's next sample starts inside its data.
    /// Returns how many samples every lane decoded and a mask of the lanes that met a case the
    /// arithmetic does not decode (a `1111` timestamp prefix, a window wider than 64 bits) or
    /// that ran past their data (truncated); those lanes' streams and outputs are garbage, and
    /// the caller decodes them again.
    ///
    /// Per sample and lane this is the arithmetic of `step` without branches: the 128 bits
    /// from the sample's first byte are gathered, the timestamp prefix is a leading-zero count
    /// of their complement, and the value's three header cases are merged with masks.
    #[target_feature(enable = "avx512f,avx512cd,avx512bw,avx512vbmi2")]
    fn run<const SETS: usize>(
        lanes_at: &Lanes<'_>,
        s: &mut [Stream; GROUP],
        ts: &mut [i64],
        vs: &mut [f64],
        n: usize,
    ) -> (usize, u32) {
        let Lanes {
            buf,
            base,
            len,
            off,
        } = *lanes_at;
        let used = (LANES * SETS).min(GROUP);
        // Lane i writes indexes `off[i]..off[i] + n`: both slices must hold them.
        if off[..used].iter().any(|&o| {
            o.checked_add(n)
                .is_none_or(|e| e > ts.len() || e > vs.len())
        }) {
            return (0, 0);
        }
        // Lane i may read 16 bytes from byte `a` when `a <= lim[i] = base[i] + len[i]`: the
        // sample starts inside the data or just after it, and the padding covers the rest.
        let (mut lim, mut end_bit, mut basea) = ([0u64; GROUP], [0u64; GROUP], [0u64; GROUP]);
        for i in 0..used {
            let end = base[i].checked_add(len[i]);
            // A lane whose data and padding are not inside `buf` (the caller never builds one)
            // gets base 1 and limit 0: no address passes, so the loop stops before any read.
            (lim[i], basea[i]) = match end {
                Some(e) if e.checked_add(PAD).is_some_and(|e| e <= buf.len()) => {
                    (e as u64, base[i] as u64)
                }
                _ => (0, 1),
            };
            end_bit[i] = (len[i] as u64).saturating_mul(8);
        }
        let mut f = [[0u64; GROUP]; 6];
        for (i, st) in s.iter().enumerate().take(used) {
            f[0][i] = st.bit as u64;
            f[1][i] = st.t as u64;
            f[2][i] = st.t_delta;
            f[3][i] = st.v;
            f[4][i] = u64::from(st.trailing);
            // The window's width `m` is kept as the payload's right shift, `(64 - m) & 63`.
            f[5][i] = u64::from(64u32.wrapping_sub(st.width)) & 63;
        }
        let [bit_a, t_a, td_a, v_a, tr_a, rsh_a] = f;
        let mut bit: [__m512i; SETS] = std::array::from_fn(|j| lanes(&bit_a, j));
        let mut t: [__m512i; SETS] = std::array::from_fn(|j| lanes(&t_a, j));
        let mut t_delta: [__m512i; SETS] = std::array::from_fn(|j| lanes(&td_a, j));
        let mut v: [__m512i; SETS] = std::array::from_fn(|j| lanes(&v_a, j));
        let mut trailing: [__m512i; SETS] = std::array::from_fn(|j| lanes(&tr_a, j));
        let mut rsh: [__m512i; SETS] = std::array::from_fn(|j| lanes(&rsh_a, j));
        let basev: [__m512i; SETS] = std::array::from_fn(|j| lanes(&basea, j));
        let limv: [__m512i; SETS] = std::array::from_fn(|j| lanes(&lim, j));
        let c = _mm512_set1_epi64;
        let (zero, one, two, three) = (c(0), c(1), c(2), c(3));
        let (seven, eight, c13) = (c(7), c(8), c(13));
        let c31 = c(31);
        let (c63, c66, c77) = (c(63), c(66), c(77));
        let new_window = c(0xC000_0000_0000_0000u64 as i64);
        let need_by_ones = _mm512_set_epi64(0, 0, 0, 0, 24, 20, 16, 1);
        let sh_by_ones = _mm512_set_epi64(0, 0, 0, 0, 44, 47, 50, 0);
        let bias_by_ones = _mm512_set_epi64(0, 0, 0, 0, 1 << 44, 1 << 47, 1 << 50, 0);
        // Reverses the bytes of each 64-bit lane: the data is big-endian.
        let bswap = _mm512_set_epi64(
            0x0809_0A0B_0C0D_0E0F,
            0x0001_0203_0405_0607,
            0x0809_0A0B_0C0D_0E0F,
            0x0001_0203_0405_0607,
            0x0809_0A0B_0C0D_0E0F,
            0x0001_0203_0405_0607,
            0x0809_0A0B_0C0D_0E0F,
            0x0001_0203_0405_0607,
        );
        let mut bad = [zero; SETS];
        let (mut tile_t, mut tile_v) = ([[zero; LANES]; SETS], [[zero; LANES]; SETS]);
        let mut k = 0;
        'samples: while k < n {
            let mut addr = [zero; SETS];
            for j in 0..SETS {
                addr[j] = _mm512_add_epi64(basev[j], _mm512_srli_epi64::<3>(bit[j]));
                if _mm512_cmple_epu64_mask(addr[j], limv[j]) != 0xFF {
                    break 'samples;
                }
            }
            for j in 0..SETS {
                // SAFETY: every lane passed `addr <= lim[i]`, and a lane's limit is either
                // `base[i] + len[i]` with `base[i] + len[i] + 16 <= buf.len()`, or 0 with a base
                // of 1, which no address passes. (`addr` cannot wrap: `bit` starts inside the
                // data and grows by at most 24 + 77 bits a sample.) So both 8-byte reads, at
                // `addr` and `addr + 8`, are inside `buf`. Gathers need no alignment.
                #[allow(unsafe_code)]
                let (g0, g1) = unsafe {
                    let p = buf.as_ptr().cast::<i64>();
                    (
                        _mm512_i64gather_epi64::<1>(addr[j], p),
                        _mm512_i64gather_epi64::<1>(_mm512_add_epi64(addr[j], eight), p),
                    )
                };
                let g0 = _mm512_shuffle_epi8(g0, bswap);
                let g1 = _mm512_shuffle_epi8(g1, bswap);
                // The 128 bits from the sample's first byte are g0:g1: a funnel shift by
                // `bit % 8` gives the 64 bits from the sample's first bit. (Other variable
                // shifts by 64 or more give 0.)
                let o = _mm512_and_si512(bit[j], seven);
                let w = _mm512_shldv_epi64(g0, g1, o);
                let ones = _mm512_lzcnt_epi64(_mm512_ternarylogic_epi64::<0x55>(w, w, w));
                let dod0 = _mm512_cmpeq_epi64_mask(ones, zero);
                // Bits of the timestamp by prefix: 1, 16, 20, 24 (the low three bits of `ones`
                // pick the entry; four ones or more is flagged below).
                let need = _mm512_permutexvar_epi64(ones, need_by_ones);
                // Delta-of-delta: the payload is `pbits` = 14, 17 or 20 bits after the prefix,
                // and its range `-(2^(pbits-1)-1) ..= 2^(pbits-1)` is two's complement shifted
                // by one: subtract one at the payload's lowest bit, shift arithmetically by
                // `sh = 64 - pbits`, add one. A `0` prefix gives 0.
                let x = _mm512_sllv_epi64(w, _mm512_add_epi64(ones, one));
                let sh = _mm512_permutexvar_epi64(ones, sh_by_ones);
                let d = _mm512_srav_epi64(
                    _mm512_sub_epi64(x, _mm512_permutexvar_epi64(ones, bias_by_ones)),
                    sh,
                );
                let dod = _mm512_maskz_mov_epi64(!dod0, _mm512_add_epi64(d, one));
                // Value header.
                let w2 = _mm512_sllv_epi64(w, need);
                let nz = _mm512_cmplt_epi64_mask(w2, zero);
                let is_new = _mm512_cmpge_epu64_mask(w2, new_window);
                let l = _mm512_and_si512(_mm512_srli_epi64::<57>(w2), c31);
                // Width field `m` (0 standing for 64): the shift `(64 - m) & 63` is `-m & 63`.
                let rsh_new =
                    _mm512_and_si512(_mm512_sub_epi64(zero, _mm512_srli_epi64::<51>(w2)), c63);
                // Bits consumed: `13 + m` for a new window, `2 + width` for the current one, 1
                // for an unchanged value.
                let adv = _mm512_mask_blend_epi64(
                    is_new,
                    _mm512_mask_blend_epi64(nz, one, _mm512_sub_epi64(c66, rsh[j])),
                    _mm512_sub_epi64(c77, rsh_new),
                );
                rsh[j] = _mm512_mask_blend_epi64(is_new, rsh[j], rsh_new);
                // `64 - l - m`, negative when the window is wider than 64 bits.
                trailing[j] =
                    _mm512_mask_blend_epi64(is_new, trailing[j], _mm512_sub_epi64(rsh_new, l));
                let hdr = _mm512_mask_blend_epi64(is_new, two, c13);
                // Negative for a prefix of four ones or more, or a window wider than 64 bits.
                bad[j] = _mm512_ternarylogic_epi64::<0xFE>(
                    bad[j],
                    _mm512_sub_epi64(three, ones),
                    trailing[j],
                );
                // The payload starts at most 7 + 24 + 13 = 44 bits into g0:g1.
                let p = _mm512_add_epi64(_mm512_add_epi64(o, need), hdr);
                let payload = _mm512_srlv_epi64(_mm512_shldv_epi64(g0, g1, p), rsh[j]);
                v[j] = _mm512_xor_si512(
                    v[j],
                    _mm512_maskz_mov_epi64(nz, _mm512_sllv_epi64(payload, trailing[j])),
                );
                bit[j] = _mm512_add_epi64(bit[j], _mm512_add_epi64(need, adv));
                t_delta[j] = _mm512_add_epi64(t_delta[j], dod);
                t[j] = _mm512_add_epi64(t[j], t_delta[j]);
                // Rows of eight samples are turned into columns, one per lane, and stored
                // eight samples at a time (cheaper than scatter stores).
                tile_t[j][k % LANES] = t[j];
                tile_v[j][k % LANES] = v[j];
            }
            k += 1;
            if k % LANES == 0 {
                for j in 0..SETS {
                    let offs = &off[j * LANES..][..LANES];
                    store_columns(&transpose(&tile_t[j]), ts, offs, k - LANES);
                    store_columns(&transpose(&tile_v[j]), vs, offs, k - LANES);
                }
            }
        }
        let rest = k % LANES;
        for j in 0..SETS {
            let offs = &off[j * LANES..][..LANES];
            store_rows(&tile_t[j][..rest], ts, offs, k - rest);
            store_rows(&tile_v[j][..rest], vs, offs, k - rest);
        }
        let mut bad_lanes = 0u32;
        let mut out = [[0u64; GROUP]; 6];
        for j in 0..SETS {
            // A lane whose last sample ended past its data was truncated (or read garbage).
            let m = _mm512_cmplt_epi64_mask(bad[j], zero)
                | _mm512_cmpgt_epu64_mask(bit[j], lanes(&end_bit, j));
            bad_lanes |= u32::from(m) << (j * LANES);
            let vecs = [bit[j], t[j], t_delta[j], v[j], trailing[j], rsh[j]];
            for (o, vec) in out.iter_mut().zip(vecs) {
                let dst: &mut [u64; LANES] =
                    (&mut o[j * LANES..][..LANES]).try_into().expect("8 lanes");
                // SAFETY: writes the 64 bytes of `dst`.
                #[allow(unsafe_code)]
                unsafe {
                    _mm512_storeu_si512(dst.as_mut_ptr().cast(), vec);
                }
            }
        }
        for (i, st) in s.iter_mut().enumerate().take(used) {
            st.bit = out[0][i] as usize;
            st.t = out[1][i] as i64;
            st.t_delta = out[2][i];
            st.v = out[3][i];
            st.trailing = out[4][i] as u32;
            st.width = 64 - out[5][i] as u32;
        }
        (k, bad_lanes)
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

    /// `decode_chunks_into` against `decode_into` chunk by chunk: outputs, and the index,
    /// error and partial output of the first failing chunk.
    fn check_chunks(chunks: &[&[u8]]) {
        let (mut ts, mut vs) = (vec![-1], vec![-1.0]);
        let got = XorIterator::decode_chunks_into(chunks, &mut ts, &mut vs);
        let (mut want_ts, mut want_vs) = (vec![-1], vec![-1.0]);
        let mut want = Ok(());
        for (i, c) in chunks.iter().enumerate() {
            if let Err(e) =
                XorIterator::new(c).and_then(|mut it| it.decode_into(&mut want_ts, &mut want_vs))
            {
                want = Err((i, e));
                break;
            }
        }
        assert_eq!(got, want);
        assert_eq!(ts, want_ts);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&vs), bits(&want_vs));
    }

    fn scrape_chunk(seed: u64, n: usize, jitter: i64, kind: u8) -> Vec<u8> {
        let mut x = seed | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = 1_700_000_000_000i64 + (rnd() % 1000) as i64;
        let mut v = 0.0f64;
        let samples: Vec<(i64, f64)> = (0..n)
            .map(|_| {
                t += 15_000 + (rnd() % (2 * jitter as u64 + 1)) as i64 - jitter;
                v = match kind {
                    0 => v + (rnd() % 100) as f64,
                    1 => (rnd() % 1_000_000) as f64 / 7.0,
                    2 => f64::from_bits(rnd()),
                    _ => 1.0,
                };
                (t, v)
            })
            .collect();
        XorEncoder::encode(samples).unwrap()
    }

    #[test]
    fn decode_chunks_matches_one_by_one() {
        // Sizes around the lockstep loop's edges, every value shape, jitter in every
        // timestamp bucket (including the 64-bit one), group remainders of every size.
        let mut chunks = Vec::new();
        for (i, n) in [0usize, 1, 2, 3, 5, 17, 120, 121, 240, 7, 120, 119]
            .iter()
            .enumerate()
        {
            for kind in 0..4u8 {
                for jitter in [0i64, 2, 5000, 60_000, 400_000, 1 << 40] {
                    chunks.push(scrape_chunk(
                        (i as u64) << 32 | u64::from(kind) << 8 | jitter as u64,
                        *n,
                        jitter,
                        kind,
                    ));
                }
            }
        }
        let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        for w in refs.chunks(13) {
            check_chunks(w);
        }
        check_chunks(&refs);
        // Full chunks of every shape, for groups of every size.
        let full: Vec<Vec<u8>> = (0..17usize)
            .map(|i| {
                scrape_chunk(
                    500 + i as u64,
                    100 + (i * 7) % 30,
                    [2, 5000, 0][i % 3],
                    i as u8 % 4,
                )
            })
            .collect();
        let refs: Vec<&[u8]> = full.iter().map(Vec::as_slice).collect();
        for len in 0..=refs.len() {
            check_chunks(&refs[..len]);
        }
        // Groups (of eight and of sixteen lanes, plus one chunk decoded alone) where one chunk
        // is truncated at every byte, or has a bit flipped in every byte.
        let good = scrape_chunk(99, 120, 2, 0);
        let same: Vec<Vec<u8>> = (0..17u64)
            .map(|i| scrape_chunk(700 + i, 120, 2, i as u8 % 4))
            .collect();
        for cut in 0..good.len() {
            for pos in [0, 3, 7, 8, 9] {
                let mut group: Vec<&[u8]> = refs[..10].to_vec();
                group[pos] = &good[..cut];
                check_chunks(&group);
            }
            // Same sample counts, so that the lanes run to the truncated chunk's last sample.
            let mut group: Vec<&[u8]> = same.iter().map(Vec::as_slice).collect();
            group[cut % 17] = &good[..cut];
            check_chunks(&group);
        }
        let mut flipped = good.clone();
        for i in 2..flipped.len() {
            for bit in [0x01u8, 0x10, 0x80] {
                flipped[i] ^= bit;
                for size in [9, 17] {
                    let mut group: Vec<&[u8]> = refs[..size].to_vec();
                    group[i % size] = &flipped;
                    check_chunks(&group);
                }
                flipped[i] ^= bit;
            }
        }
    }

    /// The vector lanes themselves decode valid groups (no fallback), with chunks of different
    /// lengths, so that the lockstep loop stops at the shortest and the rest is finished one by
    /// one, and with chunks that end exactly where a lane's padding begins.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_lanes_decode_valid_groups() {
        if !wide::available() {
            return;
        }
        let mut scratch = wide::Scratch::default();
        for size in [wide::LANES, wide::GROUP] {
            for kind in 0..4u8 {
                for jitter in [0i64, 2, 5000, 60_000] {
                    let chunks: Vec<Vec<u8>> = (0..size)
                        .map(|i| scrape_chunk(i as u64 * 7 + 1, 3 + i * 9, jitter, kind))
                        .collect();
                    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                    let (mut ts, mut vs) = (vec![5], vec![5.0]);
                    assert!(wide::decode_group_into(
                        &refs,
                        &mut ts,
                        &mut vs,
                        &mut scratch
                    ));
                    let (mut want_ts, mut want_vs) = (vec![5], vec![5.0]);
                    for c in &refs {
                        XorIterator::new(c)
                            .unwrap()
                            .decode_into(&mut want_ts, &mut want_vs)
                            .unwrap();
                    }
                    assert_eq!(ts, want_ts);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&vs), bits(&want_vs));
                }
            }
        }
        // Another count of chunks is refused, leaving the vectors alone.
        let one = scrape_chunk(1, 10, 2, 0);
        let (mut ts, mut vs) = (vec![1], vec![1.0]);
        assert!(!wide::decode_group_into(
            &[&one[..]; 3],
            &mut ts,
            &mut vs,
            &mut scratch
        ));
        assert_eq!((ts.len(), vs.len()), (1, 1));
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

        #[test]
        fn garbage_chunks_decode_like_one_by_one(
            data in proptest::collection::vec(
                proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20),
        ) {
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            check_chunks(&refs);
        }
    }
}
