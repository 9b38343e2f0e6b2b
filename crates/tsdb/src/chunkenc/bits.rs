//! The MSB-first bit writer behind XOR chunks, the layout of Prometheus' `bstream`. (Reading
//! lives in `xor.rs`, fused into the decode loop.)

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
        BitWriter {
            bytes,
            acc: 0,
            nacc: 0,
            count: 0,
        }
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
            self.count = if r <= self.count {
                self.count - r
            } else {
                8 - (r - self.count)
            };
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
            self.bytes
                .extend_from_slice(&((self.acc >> 32) as u32).to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain bit-at-a-time reader: the reference the writer is checked against.
    struct BitReader<'a> {
        data: &'a [u8],
        bit: usize,
    }

    impl<'a> BitReader<'a> {
        fn new(data: &'a [u8]) -> Self {
            BitReader { data, bit: 0 }
        }

        fn read_bits(&mut self, n: u32) -> Option<u64> {
            let mut v = 0u64;
            for _ in 0..n {
                let byte = *self.data.get(self.bit / 8)?;
                v = (v << 1) | u64::from((byte >> (7 - self.bit % 8)) & 1);
                self.bit += 1;
            }
            Some(v)
        }
    }

    #[test]
    fn write_then_read_mixed_widths() {
        let mut w = BitWriter::default();
        let items: Vec<(u64, u32)> = (0..500u64)
            .map(|i| {
                let n = (i * 7 % 64 + 1) as u32;
                let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    & if n == 64 { u64::MAX } else { (1 << n) - 1 };
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
