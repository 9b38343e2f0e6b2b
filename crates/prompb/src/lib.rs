//! Prometheus remote read on the wire, kept apart from any HTTP client so that every decoder of
//! the untrusted bytes a Prometheus (or something pretending to be one) sends back is small,
//! synchronous and fuzzed (`fuzz/fuzz_targets/remote_read.rs`).
//!
//! - [`messages`]: `ReadRequest`, `ReadResponse`, `ChunkedReadResponse` and their parts, with
//!   Prometheus' field numbers.
//! - [`take_frame`]: one `uvarint(len) | BE32 CRC32C(msg) | msg` frame of the streamed
//!   (`STREAMED_XOR_CHUNKS`) answer.
//! - [`decode_samples_response`]: the snappy-compressed `ReadResponse` of the `SAMPLES` answer.
//! - [`encode_write_request`] / [`decode_write_request`]: the snappy-compressed `WriteRequest`
//!   body of a remote write.
//!
//! **Invariant:** no input makes these functions panic or allocate beyond the stated limits
//! ([`MAX_FRAME_BYTES`], the caller's decompressed-size bound).

pub mod messages;

pub use messages::*;

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

/// Prometheus' own limit on one remote read frame (`DefaultChunkedReadLimit`, 50 MB); a larger
/// frame means a broken stream.
pub const MAX_FRAME_BYTES: usize = 50 * 1024 * 1024;

/// Why a frame of the chunked stream is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length varint is malformed")]
    BadLength,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES} byte limit")]
    TooLarge(u64),
    #[error("frame checksum mismatch: header says {want:#010x}, data has {got:#010x}")]
    Checksum { want: u32, got: u32 },
    #[error("stream ended inside a frame ({0} bytes left over)")]
    Truncated(usize),
}

/// Takes one complete frame (`uvarint(len) | BE32 CRC32C(msg) | msg`) off the front of `buf`,
/// or `None` when more bytes are needed. The CRC covers the message only.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let mut len: u64 = 0;
    let mut header = 0usize;
    loop {
        let Some(&b) = buf.get(header) else {
            return Ok(None);
        };
        if header == 10 || (header == 9 && b > 1) {
            return Err(FrameError::BadLength);
        }
        len |= u64::from(b & 0x7f) << (7 * header);
        header += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    if len > MAX_FRAME_BYTES as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let total = header + 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    buf.advance(header);
    let want = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    buf.advance(4);
    let msg = buf.split_to(len as usize).freeze();
    let got = crc32c::crc32c(&msg);
    if got != want {
        return Err(FrameError::Checksum { want, got });
    }
    Ok(Some(msg))
}

/// Decodes the body of a `SAMPLES` answer: a snappy block holding one `ReadResponse`. The
/// decompressed size is read from snappy's header and refused above `max_bytes` before
/// anything is allocated.
pub fn decode_samples_response(
    compressed: &[u8],
    max_bytes: usize,
) -> Result<ReadResponse, String> {
    let raw = decompress_bounded(compressed, max_bytes)?;
    ReadResponse::decode(raw.as_slice()).map_err(|e| e.to_string())
}

/// A snappy block decompressed, refused before allocating when it would exceed `max_bytes`
/// (the length is read from the block's header).
fn decompress_bounded(compressed: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let len = snap::raw::decompress_len(compressed).map_err(|e| e.to_string())?;
    if len > max_bytes {
        return Err(format!(
            "{len} bytes decompressed is more than the {max_bytes} accepted"
        ));
    }
    snap::raw::Decoder::new()
        .decompress_vec(compressed)
        .map_err(|e| e.to_string())
}

/// The body of a remote write `POST`: the `WriteRequest` protobuf compressed as one snappy
/// *block* (not the framed stream format), which is what `Content-Encoding: snappy` means in
/// the remote write protocol.
pub fn encode_write_request(req: &WriteRequest) -> Result<Vec<u8>, String> {
    // snappy refuses only inputs beyond its ~4 GiB block limit.
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .map_err(|e| {
            format!(
                "snappy-compressing a {} byte write request: {e}",
                req.encoded_len()
            )
        })
}

/// Decodes a remote write body (snappy block + `WriteRequest`), refusing one whose
/// decompressed size exceeds `max_bytes` before allocating it: what a receiver does.
pub fn decode_write_request(compressed: &[u8], max_bytes: usize) -> Result<WriteRequest, String> {
    let raw = decompress_bounded(compressed, max_bytes)?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut n = msg.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn frames_are_taken_whole_and_checked() {
        let big = vec![7u8; 300];
        let mut all = frame(b"hello");
        all.extend(frame(&big));
        // Fed one byte at a time, frames come out only when complete.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &all {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = take_frame(&mut buf).unwrap() {
                got.push(m.to_vec());
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), big]);
        assert!(buf.is_empty());

        let mut bad = frame(b"hello");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = take_frame(&mut BytesMut::from(&bad[..])).unwrap_err();
        assert!(matches!(err, FrameError::Checksum { .. }), "{err}");

        let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert_eq!(
            take_frame(&mut BytesMut::from(&huge[..])).unwrap_err(),
            FrameError::TooLarge(0xffff_ffff)
        );
        let endless = [0xffu8; 11];
        assert_eq!(
            take_frame(&mut BytesMut::from(&endless[..])).unwrap_err(),
            FrameError::BadLength
        );
    }

    #[test]
    fn samples_response_round_trips_and_refuses_oversized_bodies() {
        let resp = ReadResponse {
            results: vec![QueryResult {
                timeseries: vec![TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    }],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
                    ..Default::default()
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&resp.encode_to_vec())
            .unwrap();
        assert_eq!(decode_samples_response(&body, 1 << 20).unwrap(), resp);
        let err = decode_samples_response(&body, 4).unwrap_err();
        assert!(err.contains("more than the 4 accepted"), "{err}");
        assert!(decode_samples_response(b"\xff\xff\xff", 1 << 20).is_err());
    }

    #[test]
    fn write_request_body_is_a_snappy_block_and_round_trips() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "x".into(),
                }],
                samples: vec![Sample {
                    value: 2.5,
                    timestamp: 9,
                }],
                ..Default::default()
            }],
            metadata: Vec::new(),
        };
        let body = encode_write_request(&req).unwrap();
        // A snappy block starts with the uvarint of the uncompressed length (no stream
        // identifier chunk 0xff "sNaPpY").
        assert_eq!(body[0] as usize, req.encoded_len());
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&body).unwrap(),
            req.encode_to_vec()
        );
        assert_eq!(decode_write_request(&body, 1 << 20).unwrap(), req);
        assert!(decode_write_request(&body, 2).is_err());
        assert!(decode_write_request(b"\xff\x01", 1 << 20).is_err());
    }
}
