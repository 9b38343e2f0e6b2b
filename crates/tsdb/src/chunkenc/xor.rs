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

use super::bits::{BitReader, BitWriter};
use super::ChunkError;
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

/// Decoder state between samples.
#[derive(Clone, Copy, Debug)]
struct State {
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
    r: BitReader<'a>,
    st: State,
    total: u16,
    read: u16,
    /// Bytes of sample 0 (and sample 1's timestamp) already parsed, kept for the first calls.
    first: [(i64, u64); 2],
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
        let mut st = State { t: 0, t_delta: 0, v: 0, leading: 0, trailing: 0 };
        let mut first = [(0i64, 0u64); 2];
        if total >= 1 {
            let (t0, n) = read_varint(&data[pos..]).map_err(|_| trunc(total))?;
            pos += n;
            let v0 = data.get(pos..pos + 8).ok_or(trunc(total))?;
            pos += 8;
            st.t = t0;
            st.v = u64::from_be_bytes(v0.try_into().expect("8 bytes"));
            first[0] = (st.t, st.v);
        }
        if total >= 2 {
            let (d, n) = read_uvarint(&data[pos..])
                .map_err(|_| ChunkError::Truncated { sample: 1, total })?;
            pos += n;
            st.t_delta = d;
        }
        Ok(XorIterator { r: BitReader::new(&data[pos..]), st, total, read: 0, first, failed: false })
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
        let remaining = usize::from(self.total - self.read);
        ts.reserve(remaining);
        vs.reserve(remaining);
        while self.read < self.total.min(2) {
            let (t, v) = self.next_early()?;
            ts.push(t);
            vs.push(v);
        }
        // The hot loop keeps the reader and state in locals so they live in registers.
        let mut r = self.r;
        let mut st = self.st;
        let total = self.total;
        let mut i = self.read;
        while i < total {
            if let Err(reason) = decode_sample(&mut r, &mut st) {
                self.failed = true;
                self.read = i;
                return Err(reason.into_error(i, total));
            }
            ts.push(st.t);
            vs.push(f64::from_bits(st.v));
            i += 1;
        }
        self.r = r;
        self.st = st;
        self.read = total;
        Ok(())
    }

    /// Samples 0 and 1 (sample 1's value is the first bit-packed field).
    fn next_early(&mut self) -> Result<(i64, f64), ChunkError> {
        if self.read == 0 {
            self.read = 1;
            return Ok((self.first[0].0, f64::from_bits(self.first[0].1)));
        }
        // Sample 1: its timestamp delta was parsed in `new`.
        let total = self.total;
        self.st.t = self.st.t.wrapping_add(self.st.t_delta as i64);
        if let Err(reason) = decode_value(&mut self.r, &mut self.st) {
            self.failed = true;
            return Err(reason.into_error(1, total));
        }
        self.read = 2;
        self.first[1] = (self.st.t, self.st.v);
        Ok((self.st.t, f64::from_bits(self.st.v)))
    }
}

impl Iterator for XorIterator<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        if self.read < 2 {
            return Some(self.next_early());
        }
        let i = self.read;
        match decode_sample(&mut self.r, &mut self.st) {
            Ok(()) => {
                self.read += 1;
                Some(Ok((self.st.t, f64::from_bits(self.st.v))))
            }
            Err(reason) => {
                self.failed = true;
                Some(Err(reason.into_error(i, self.total)))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.failed { 0 } else { usize::from(self.total - self.read) };
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
            Fail::Corrupt(reason) => ChunkError::Corrupt { sample, total, reason },
        }
    }
}

/// Decodes sample n ≥ 2: delta-of-delta timestamp, then the value.
#[inline(always)]
fn decode_sample(r: &mut BitReader<'_>, st: &mut State) -> Result<(), Fail> {
    if r.nbits < 57 {
        r.refill();
    }
    // The prefix is 0, 10, 110, 1110 or 1111: count leading ones, at most four.
    let dod: i64 = match r.buf.leading_ones() {
        0 => {
            if r.nbits < 1 {
                return Err(Fail::Truncated);
            }
            r.consume(1);
            0
        }
        1 => read_dod(r, 2, 14)?,
        2 => read_dod(r, 3, 17)?,
        3 => read_dod(r, 4, 20)?,
        _ => {
            if r.nbits < 4 {
                return Err(Fail::Truncated);
            }
            r.consume(4);
            r.read_bits(64).ok_or(Fail::Truncated)? as i64
        }
    };
    st.t_delta = st.t_delta.wrapping_add(dod as u64);
    st.t = st.t.wrapping_add(st.t_delta as i64);
    decode_value(r, st)
}

/// Reads a `prefix`-bit bucket code followed by an `n`-bit delta-of-delta.
#[inline(always)]
fn read_dod(r: &mut BitReader<'_>, prefix: u32, n: u32) -> Result<i64, Fail> {
    let need = prefix + n;
    if !r.ensure(need) {
        return Err(Fail::Truncated);
    }
    let raw = (r.buf >> (64 - need)) & ((1u64 << n) - 1);
    r.consume(need);
    // Payloads above 2^(n-1) are negative; exactly 2^(n-1) is positive (asymmetric range).
    let half = 1u64 << (n - 1);
    Ok(if raw > half { raw as i64 - (1i64 << n) } else { raw as i64 })
}

#[inline(always)]
fn decode_value(r: &mut BitReader<'_>, st: &mut State) -> Result<(), Fail> {
    if !r.ensure(1) {
        return Err(Fail::Truncated);
    }
    if r.buf >> 63 == 0 {
        r.consume(1);
        return Ok(());
    }
    if !r.ensure(2) {
        return Err(Fail::Truncated);
    }
    let mbits = if (r.buf >> 62) & 1 == 0 {
        // "10": reuse the current window.
        r.consume(2);
        64 - st.leading - st.trailing
    } else {
        // "11": a new window, 5 bits of leading zeros and 6 bits of significant bits.
        if !r.ensure(13) {
            return Err(Fail::Truncated);
        }
        let leading = ((r.buf >> 57) & 0x1F) as u32;
        let mut mbits = ((r.buf >> 51) & 0x3F) as u32;
        r.consume(13);
        if mbits == 0 {
            mbits = 64;
        }
        if leading + mbits > 64 {
            return Err(Fail::Corrupt("XOR window wider than 64 bits"));
        }
        st.leading = leading;
        st.trailing = 64 - leading - mbits;
        mbits
    };
    if mbits == 0 {
        return Err(Fail::Corrupt("XOR window of zero bits"));
    }
    let bits = r.read_bits(mbits).ok_or(Fail::Truncated)?;
    st.v ^= bits << st.trailing;
    Ok(())
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
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
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
        let mut want = vec![0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07];
        // 0011 0000 | 1001 0111 | 1111 1111 | 1100 0000
        want.extend_from_slice(&[0b0011_0000, 0b1001_0111, 0b1111_1111, 0b1100_0000]);
        assert_eq!(bytes, want);
        assert_eq!(decode_all(&bytes).unwrap(), vec![(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
    }

    #[test]
    fn every_dod_bucket_and_boundaries_round_trip() {
        let mut t = 1_600_000_000_000i64;
        let mut samples = vec![(t, 0.0), (t + 15_000, 1.0)];
        let mut delta = 15_000i64;
        t += 15_000;
        for dod in [
            0i64, 1, -1, 8192, -8191, 8193, -8192, 65536, -65535, 65537, -65536, 524288,
            -524287, 524289, -524288, 1 << 40, -(1 << 40), 0, 0,
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
            0.0, -0.0, 1.0, f64::NAN, stale, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE,
            f64::MAX, f64::MIN, 1e-300, 5e-324, 12345.678, 12345.678, -1.0,
        ];
        let samples: Vec<(i64, f64)> =
            vals.iter().enumerate().map(|(i, &v)| (i as i64 * 1000 - 3000, v)).collect();
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
        let samples: Vec<(i64, f64)> = (0..120).map(|i| (i * 15_000 + 7, (i as f64).sin())).collect();
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
