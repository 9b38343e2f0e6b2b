//! MSB-first bit streams, the layout of Prometheus' `bstream`.
//!
//! The reader keeps up to 64 upcoming bits in a register and refills it eight bytes at a time
//! with one unaligned big-endian load, so the decode loop touches memory about once per
//! sample. Bits in the register past `nbits` are either zero or the true next bits of the
//! stream (a refill may load a byte early and OR it in again later at the same position), so
//! peeking at them is harmless; consuming them is not, which is what the `nbits` checks guard.

/// Appends bits, most significant first, to a byte vector.
///
/// Byte-exactness with Prometheus needs one quirk of its `bstream`: `writeByte` always
/// appends a fresh byte after the one it fills, so a stream that ends byte-aligned right after
/// a whole-byte write carries one trailing zero byte (bstream's `count == 8` state). `count`
/// mirrors bstream's counter of free bits in the last byte so that [`BitWriter::to_bytes`]
/// emits that byte exactly when Prometheus does.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    pub(crate) bytes: Vec<u8>,
    /// Pending bits, left-aligned. Fewer than 32 after every write.
    acc: u64,
    nacc: u32,
    /// bstream's `count`: free bits in its last byte, 0..=8.
    count: u32,
}

impl BitWriter {
    pub(crate) fn with_bytes(bytes: Vec<u8>) -> Self {
        BitWriter { bytes, acc: 0, nacc: 0, count: 0 }
    }

    /// Mirrors bstream's bookkeeping for `writeBits(u, n)`: `n / 8` calls to `writeByte`
    /// (which turn a full last byte into a fresh one, count 8, and otherwise keep count), then
    /// `n % 8` calls to `writeBit` (each takes one free bit, starting a byte when none is left).
    #[inline]
    fn track_count(&mut self, n: u32) {
        if n >= 8 && self.count == 0 {
            self.count = 8;
        }
        let r = n % 8;
        if r > 0 {
            if self.count == 0 {
                self.count = 8;
            }
            self.count = if r <= self.count { self.count - r } else { 8 - (r - self.count) };
        }
    }

    /// Writes the low `n` bits of `v` (0 ≤ n ≤ 64).
    #[inline]
    pub(crate) fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        self.track_count(n);
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        if self.nacc + n <= 64 {
            self.acc |= v << (64 - self.nacc - n);
            self.nacc += n;
        } else {
            // Only reachable for n > 32: take the high part now, the rest after a flush.
            let first = 64 - self.nacc;
            let rest = n - first;
            self.acc |= v >> rest;
            self.bytes.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = v << (64 - rest);
            self.nacc = rest;
        }
        if self.nacc >= 32 {
            self.bytes.extend_from_slice(&((self.acc >> 32) as u32).to_be_bytes());
            self.acc <<= 32;
            self.nacc -= 32;
        }
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    #[inline]
    pub(crate) fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    /// The stream so far, with the last partial byte padded with zero bits (and bstream's
    /// empty trailing byte when it would have one).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 5);
        out.extend_from_slice(&self.bytes);
        let full = self.nacc.div_ceil(8) as usize;
        out.extend_from_slice(&self.acc.to_be_bytes()[..full]);
        if self.count == 8 {
            out.push(0);
        }
        out
    }

    /// Number of bytes [`BitWriter::to_bytes`] returns.
    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes.len() + self.nacc.div_ceil(8) as usize + usize::from(self.count == 8)
    }
}

/// Reads bits, most significant first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load into `buf`.
    pos: usize,
    /// Upcoming bits, left-aligned.
    pub(crate) buf: u64,
    /// How many leading bits of `buf` are valid.
    pub(crate) nbits: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0, buf: 0, nbits: 0 }
    }

    /// Tops the register up to at least 56 valid bits, or to the end of the data.
    #[inline(always)]
    pub(crate) fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..self.pos + 8) {
            let w = u64::from_be_bytes(word.try_into().expect("8 bytes"));
            // nbits < 64 here: callers refill only when they need more than they have.
            self.buf |= w >> self.nbits;
            let add = (63 - self.nbits) >> 3;
            self.pos += add as usize;
            self.nbits += add << 3;
        } else {
            self.refill_tail();
        }
    }

    #[cold]
    fn refill_tail(&mut self) {
        while self.nbits <= 56 && self.pos < self.data.len() {
            self.buf |= u64::from(self.data[self.pos]) << (56 - self.nbits);
            self.pos += 1;
            self.nbits += 8;
        }
    }

    /// Drops `n` (< 64) bits that the caller has checked are valid.
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n < 64 && n <= self.nbits);
        self.buf <<= n;
        self.nbits -= n;
    }

    /// Reads `n` bits, 1 ≤ n ≤ 64. `None` when the data ends first.
    #[inline(always)]
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&n));
        if n <= self.nbits && n < 64 {
            let v = self.buf >> (64 - n);
            self.consume(n);
            return Some(v);
        }
        self.read_bits_slow(n)
    }

    /// A refill guarantees only 56 bits, so wider reads are split in two.
    #[cold]
    fn read_bits_slow(&mut self, n: u32) -> Option<u64> {
        if n > 56 {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            return Some((hi << 32) | lo);
        }
        self.refill();
        if n > self.nbits {
            return None;
        }
        let v = self.buf >> (64 - n);
        self.consume(n);
        Some(v)
    }

    /// Makes sure at least `n` bits are valid, refilling if needed.
    #[inline(always)]
    pub(crate) fn ensure(&mut self, n: u32) -> bool {
        if n > self.nbits {
            self.refill();
        }
        n <= self.nbits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_mixed_widths() {
        let mut w = BitWriter::default();
        let items: Vec<(u64, u32)> = (0..500u64)
            .map(|i| {
                let n = (i * 7 % 64 + 1) as u32;
                let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & if n == 64 { u64::MAX } else { (1 << n) - 1 };
                (v, n)
            })
            .collect();
        for &(v, n) in &items {
            w.write_bits(v, n);
        }
        let bytes = w.to_bytes();
        let total: u32 = items.iter().map(|x| x.1).sum();
        assert!(bytes.len() - total.div_ceil(8) as usize <= 1);
        assert_eq!(w.len_bytes(), bytes.len());
        let mut r = BitReader::new(&bytes);
        for &(v, n) in &items {
            assert_eq!(r.read_bits(n), Some(v), "width {n}");
        }
        // Only zero padding is left.
        let pad = (8 - total % 8) % 8;
        if pad > 0 {
            assert_eq!(r.read_bits(pad), Some(0));
        }
        assert_eq!(r.read_bits(1), None);
    }

    #[test]
    fn msb_first_layout() {
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0b01, 2);
        w.write_byte(0xFF);
        assert_eq!(w.to_bytes(), vec![0b1011_1111, 0b1110_0000]);
    }

    #[test]
    fn trailing_byte_like_bstream() {
        // Aligned after a whole-byte write: bstream keeps an empty byte.
        let mut w = BitWriter::default();
        w.write_byte(0xAB);
        assert_eq!(w.to_bytes(), vec![0xAB, 0]);
        // Aligned after single bits: no extra byte.
        let mut w = BitWriter::default();
        for _ in 0..8 {
            w.write_bit(true);
        }
        assert_eq!(w.to_bytes(), vec![0xFF]);
        // A byte written at an unaligned position keeps the alignment (count) unchanged.
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        w.write_byte(0xFF);
        assert_eq!(w.to_bytes(), vec![0b1011_1111, 0b1110_0000]);
        assert_eq!(w.len_bytes(), 2);
        // 12 bits = one whole byte then four bits: aligned only after the bits, count 4.
        let mut w = BitWriter::default();
        w.write_bits(0xFFF, 12);
        w.write_bits(0, 4);
        assert_eq!(w.to_bytes(), vec![0xFF, 0xF0]);
    }
}
