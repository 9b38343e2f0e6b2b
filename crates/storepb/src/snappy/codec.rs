//! The Snappy side of gRPC message compression, with no gRPC or HTTP in it: the framing
//! format (written and read on top of `snap::raw`) and [`FrameTransformer`], which rewrites a
//! stream of gRPC length-prefixed messages. Kept apart from the layers in the parent module so
//! that the fuzz targets (`fuzz/`) can compile it without tonic.

use bytes::{BufMut, Bytes, BytesMut};

/// The gRPC message prefix: compressed flag (1 byte) and big-endian length (4 bytes).
pub(crate) const PREFIX_LEN: usize = 5;

/// The largest uncompressed chunk the framing format allows (and Go's writer produces).
pub(crate) const MAX_CHUNK_DATA: usize = 65536;

/// Chunk header: type (1 byte) and little-endian length (3 bytes).
pub(crate) const CHUNK_HEADER_LEN: usize = 4;

/// The stream identifier chunk every framed stream starts with: type 0xff, length 6,
/// `sNaPpY`.
pub(crate) const STREAM_IDENTIFIER: [u8; 10] =
    [0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];

pub(crate) const CHUNK_COMPRESSED: u8 = 0x00;
pub(crate) const CHUNK_UNCOMPRESSED: u8 = 0x01;
pub(crate) const CHUNK_PADDING: u8 = 0xfe;
pub(crate) const CHUNK_STREAM_IDENTIFIER: u8 = 0xff;

/// Why a gRPC message stream could not be compressed or decompressed.
#[derive(Debug, thiserror::Error)]
pub enum SnappyError {
    /// The prefix's flag byte is neither 0 nor 1: the body is not a gRPC message stream.
    #[error(
        "snappy: gRPC message prefix has compressed-flag {flag}, expected 0 or 1; \
         the peer did not send gRPC length-prefixed messages"
    )]
    BadFlag { flag: u8 },
    /// A message (compressed or not) is larger than this side accepts.
    #[error(
        "snappy: gRPC message of {len} bytes exceeds the limit of {limit} bytes; \
         ask for less data per call"
    )]
    TooLarge { len: usize, limit: usize },
    /// The body ended in the middle of a message.
    #[error(
        "snappy: the stream ended inside a gRPC message ({have} of {want} bytes received); \
         the peer closed the call early"
    )]
    Truncated { have: usize, want: usize },
    /// The compressed payload is not a valid Snappy framed stream.
    #[error(
        "snappy: corrupt framed-snappy message payload at byte {offset}: {detail}; \
         the peer must use the Snappy framing format (Go's snappy.NewBufferedWriter)"
    )]
    Corrupt { offset: usize, detail: String },
    /// Asked to compress a message another codec already compressed.
    #[error(
        "snappy: a gRPC message is already compressed with another encoding; \
         do not combine --grpc-compression=snappy with another compression"
    )]
    AlreadyCompressed,
}

pub(crate) fn corrupt(offset: usize, detail: impl Into<String>) -> SnappyError {
    SnappyError::Corrupt {
        offset,
        detail: detail.into(),
    }
}

/// The framing format's checksum: CRC-32C of the uncompressed data, rotated and offset so that
/// data containing its own CRC does not checksum to a fixed value.
pub(crate) fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

pub(crate) fn put_chunk_header(out: &mut [u8], kind: u8, len: usize) {
    out[0] = kind;
    out[1] = len as u8;
    out[2] = (len >> 8) as u8;
    out[3] = (len >> 16) as u8;
}

/// The block codecs, reused across the messages of one call so their tables are allocated once.
#[derive(Default)]
pub(crate) struct Codec {
    enc: Option<snap::raw::Encoder>,
    dec: Option<snap::raw::Decoder>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    /// Appends `src` to `out` as one framed-snappy stream: the stream identifier, then chunks
    /// of at most 64 KiB, each compressed unless that saves less than 1/8 (Go's rule).
    fn compress(&mut self, src: &[u8], out: &mut BytesMut) -> Result<(), SnappyError> {
        let enc = self.enc.get_or_insert_with(snap::raw::Encoder::new);
        out.extend_from_slice(&STREAM_IDENTIFIER);
        for chunk in src.chunks(MAX_CHUNK_DATA) {
            let crc = masked_crc(chunk);
            let start = out.len();
            let body = start + CHUNK_HEADER_LEN + 4;
            out.resize(body + snap::raw::max_compress_len(chunk.len()), 0);
            let n = enc
                .compress(chunk, &mut out[body..])
                .map_err(|e| corrupt(0, format!("compressing a chunk: {e}")))?;
            if n >= chunk.len() - chunk.len() / 8 {
                out.truncate(body);
                out.extend_from_slice(chunk);
                put_chunk_header(&mut out[start..], CHUNK_UNCOMPRESSED, 4 + chunk.len());
            } else {
                out.truncate(body + n);
                put_chunk_header(&mut out[start..], CHUNK_COMPRESSED, 4 + n);
            }
            out[start + CHUNK_HEADER_LEN..body].copy_from_slice(&crc.to_le_bytes());
        }
        Ok(())
    }

    /// Appends the decompression of the framed-snappy stream `src` to `out`, refusing to
    /// produce more than `limit` bytes. Returns the number of bytes produced.
    fn decompress(
        &mut self,
        src: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<usize, SnappyError> {
        let dec = self.dec.get_or_insert_with(snap::raw::Decoder::new);
        let mut produced = 0usize;
        let mut pos = 0usize;
        let mut seen_identifier = false;
        while pos < src.len() {
            if src.len() - pos < CHUNK_HEADER_LEN {
                return Err(corrupt(pos, "truncated chunk header"));
            }
            let kind = src[pos];
            let len = src[pos + 1] as usize
                | (src[pos + 2] as usize) << 8
                | (src[pos + 3] as usize) << 16;
            let data_at = pos + CHUNK_HEADER_LEN;
            if src.len() - data_at < len {
                return Err(corrupt(
                    pos,
                    format!(
                        "chunk of type {kind:#04x} claims {len} bytes, {} remain",
                        src.len() - data_at
                    ),
                ));
            }
            let data = &src[data_at..data_at + len];
            if !seen_identifier && kind != CHUNK_STREAM_IDENTIFIER {
                return Err(corrupt(
                    pos,
                    format!("stream must start with the identifier chunk 0xff, found {kind:#04x}"),
                ));
            }
            match kind {
                CHUNK_STREAM_IDENTIFIER => {
                    if data != &STREAM_IDENTIFIER[CHUNK_HEADER_LEN..] {
                        return Err(corrupt(pos, "bad stream identifier (want sNaPpY)"));
                    }
                    seen_identifier = true;
                }
                CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                    if len < 4 {
                        return Err(corrupt(
                            pos,
                            format!("data chunk of {len} bytes has no CRC"),
                        ));
                    }
                    let want_crc = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    let payload = &data[4..];
                    let n = if kind == CHUNK_UNCOMPRESSED {
                        payload.len()
                    } else {
                        snap::raw::decompress_len(payload)
                            .map_err(|e| corrupt(pos, format!("compressed chunk: {e}")))?
                    };
                    if n > MAX_CHUNK_DATA {
                        return Err(corrupt(
                            pos,
                            format!("chunk holds {n} bytes, the format allows {MAX_CHUNK_DATA}"),
                        ));
                    }
                    if produced + n > limit {
                        return Err(SnappyError::TooLarge {
                            len: produced + n,
                            limit,
                        });
                    }
                    let at = out.len();
                    if kind == CHUNK_UNCOMPRESSED {
                        out.extend_from_slice(payload);
                    } else {
                        out.resize(at + n, 0);
                        if let Err(e) = dec.decompress(payload, &mut out[at..]) {
                            out.truncate(at);
                            return Err(corrupt(pos, format!("compressed chunk: {e}")));
                        }
                    }
                    let got_crc = masked_crc(&out[at..]);
                    if got_crc != want_crc {
                        return Err(corrupt(
                            pos,
                            format!(
                                "checksum mismatch (chunk says {want_crc:#010x}, data gives {got_crc:#010x})"
                            ),
                        ));
                    }
                    produced += n;
                }
                CHUNK_PADDING | 0x80..=0xfd => {} // padding and reserved skippable chunks
                _ => {
                    return Err(corrupt(
                        pos,
                        format!("reserved unskippable chunk type {kind:#04x}"),
                    ));
                }
            }
            pos = data_at + len;
        }
        Ok(produced)
    }
}

/// Appends `src` to `out` compressed in the Snappy framing format (one complete stream).
pub fn compress_framed(src: &[u8], out: &mut BytesMut) -> Result<(), SnappyError> {
    Codec::default().compress(src, out)
}

/// Decompresses one complete Snappy framed stream, refusing outputs over `limit` bytes.
pub fn decompress_framed(src: &[u8], limit: usize) -> Result<Bytes, SnappyError> {
    let mut out = BytesMut::new();
    Codec::default().decompress(src, &mut out, limit)?;
    Ok(out.freeze())
}

/// Which way a [`FrameTransformer`] rewrites messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Compress,
    Decompress { limit: usize },
}

/// Rewrites a stream of gRPC length-prefixed messages, fed as arbitrary body chunks.
///
/// Compressing turns every non-empty uncompressed message into a compressed one (flag 1,
/// framed-snappy payload); empty messages stay uncompressed, as grpc-go leaves them.
/// Decompressing turns every compressed message into an uncompressed one (flag 0) and passes
/// uncompressed ones through; both directions keep message boundaries and order.
#[derive(Debug)]
pub struct FrameTransformer {
    direction: Direction,
    /// Bytes of a message not yet complete.
    pending: BytesMut,
    codec: Codec,
    /// Messages compressed or decompressed so far.
    transformed: u64,
}

impl FrameTransformer {
    /// A transformer that compresses every message.
    pub fn compressor() -> Self {
        FrameTransformer {
            direction: Direction::Compress,
            pending: BytesMut::new(),
            codec: Codec::default(),
            transformed: 0,
        }
    }

    /// A transformer that decompresses every message, refusing any message (compressed or
    /// decompressed) over `max_message_bytes`.
    pub fn decompressor(max_message_bytes: usize) -> Self {
        FrameTransformer {
            direction: Direction::Decompress {
                limit: max_message_bytes,
            },
            pending: BytesMut::new(),
            codec: Codec::default(),
            transformed: 0,
        }
    }

    /// How many messages were compressed or decompressed so far (not counting the ones passed
    /// through).
    pub fn transformed_messages(&self) -> u64 {
        self.transformed
    }

    /// Feeds the next body chunk; returns the rewritten bytes of every message it completed
    /// (possibly none).
    pub fn push(&mut self, chunk: Bytes) -> Result<Bytes, SnappyError> {
        let mut input = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            // Still inside one large message: keep accumulating without re-copying.
            if let Some(want) = self.pending_message_len()?
                && self.pending.len() < want
            {
                return Ok(Bytes::new());
            }
            self.pending.split().freeze()
        };
        let mut out = BytesMut::new();
        while input.len() >= PREFIX_LEN {
            let (flag, len) = self.check_prefix(&input)?;
            if input.len() - PREFIX_LEN < len {
                self.pending.reserve(PREFIX_LEN + len);
                break;
            }
            let message = input.split_to(PREFIX_LEN + len);
            self.rewrite(flag, &message[PREFIX_LEN..], &message, &mut out)?;
        }
        self.pending.extend_from_slice(&input);
        Ok(out.freeze())
    }

    /// The full length (prefix included) of the message being buffered, once its prefix is in.
    fn pending_message_len(&self) -> Result<Option<usize>, SnappyError> {
        if self.pending.len() < PREFIX_LEN {
            return Ok(None);
        }
        let (_, len) = self.check_prefix(&self.pending)?;
        Ok(Some(PREFIX_LEN + len))
    }

    /// Reads and checks the prefix at the start of `buf` (at least [`PREFIX_LEN`] bytes long).
    fn check_prefix(&self, buf: &[u8]) -> Result<(u8, usize), SnappyError> {
        let flag = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if flag > 1 {
            return Err(SnappyError::BadFlag { flag });
        }
        if let Direction::Decompress { limit } = self.direction {
            // A framed stream is a little longer than its data when nothing compresses
            // (8 bytes per 64 KiB chunk plus the identifier).
            let max = if flag == 1 {
                limit.saturating_add(limit / 4096).saturating_add(64)
            } else {
                limit
            };
            if len > max {
                return Err(SnappyError::TooLarge { len, limit });
            }
        }
        Ok((flag, len))
    }

    fn rewrite(
        &mut self,
        flag: u8,
        payload: &[u8],
        message: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SnappyError> {
        match (self.direction, flag) {
            (Direction::Compress, 1) => Err(SnappyError::AlreadyCompressed),
            (Direction::Decompress { .. }, 0) => {
                out.extend_from_slice(message);
                Ok(())
            }
            (Direction::Compress, _) if payload.is_empty() => {
                out.extend_from_slice(message);
                Ok(())
            }
            (Direction::Compress, _) => {
                let start = out.len();
                out.put_bytes(0, PREFIX_LEN);
                self.codec.compress(payload, out)?;
                self.finish_prefix(out, start, 1)
            }
            (Direction::Decompress { limit }, _) => {
                let start = out.len();
                out.put_bytes(0, PREFIX_LEN);
                self.codec.decompress(payload, out, limit)?;
                self.finish_prefix(out, start, 0)
            }
        }
    }

    /// Fills in the prefix of the message written from `start`.
    fn finish_prefix(
        &mut self,
        out: &mut BytesMut,
        start: usize,
        flag: u8,
    ) -> Result<(), SnappyError> {
        let len = out.len() - start - PREFIX_LEN;
        let len32 = u32::try_from(len).map_err(|_| SnappyError::TooLarge {
            len,
            limit: u32::MAX as usize,
        })?;
        out[start] = flag;
        out[start + 1..start + PREFIX_LEN].copy_from_slice(&len32.to_be_bytes());
        self.transformed += 1;
        Ok(())
    }

    /// Checks that the stream ended between messages.
    pub fn finish(&self) -> Result<(), SnappyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let want = if self.pending.len() >= PREFIX_LEN {
            PREFIX_LEN
                + u32::from_be_bytes([
                    self.pending[1],
                    self.pending[2],
                    self.pending[3],
                    self.pending[4],
                ]) as usize
        } else {
            PREFIX_LEN
        };
        Err(SnappyError::Truncated {
            have: self.pending.len(),
            want,
        })
    }
}
