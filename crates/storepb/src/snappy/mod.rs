//! gRPC message compression with Snappy, as Thanos' `--grpc-compression=snappy` speaks it.
//!
//! Thanos registers `github.com/mostynb/go-grpc-compression/snappy` under the gRPC encoding name
//! `snappy`. Each gRPC message (5-byte prefix: compressed flag, big-endian length; then the
//! payload) whose flag is 1 carries the payload in the Snappy *framing format* (a stream
//! identifier chunk, then compressed or uncompressed chunks of at most 64 KiB, each with a
//! masked CRC-32C), which is what Go's `snappy.NewBufferedWriter` writes and `snappy.NewReader`
//! reads. It is not the raw block format Prometheus' remote read uses.
//!
//! tonic only knows gzip, deflate and zstd and refuses any other `grpc-encoding`, so Snappy is
//! handled one layer below it, on the HTTP bodies:
//!
//! - [`FrameTransformer`] rewrites a stream of gRPC messages, compressing or decompressing each
//!   one. It is fed body chunks as they arrive, so messages may be split across chunks or
//!   several may share one; only an incomplete message is ever buffered.
//! - [`SnappyServerLayer`] sits in front of tonic's routes on every Store API server
//!   ([`crate::server::serve`]): a request with `grpc-encoding: snappy` has that header removed
//!   and its messages decompressed before tonic sees them, and, as grpc-go servers do, its
//!   responses are compressed with Snappy when the client accepts it. Other requests pass
//!   untouched.
//! - [`SnappyChannel`] wraps a client channel: with Snappy enabled it compresses requests,
//!   advertises `snappy`, and decompresses responses marked `grpc-encoding: snappy`; disabled,
//!   it passes every call straight through.
//!
//! The framing format is written and read here on top of `snap::raw` (the block codec) rather
//! than with `snap`'s `FrameEncoder`/`FrameDecoder`: those allocate about 140 KiB of buffers
//! each and cannot be reset, and gRPC needs a fresh framed stream (with its own stream
//! identifier) for every message, of which a Series call sends thousands. Writing the frames
//! here also lets the decompressed size be bounded chunk by chunk, so a small hostile message
//! cannot make us allocate gigabytes. The tests check both directions against `snap`'s own
//! framing implementation and against bytes built by hand from the specification.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::future::{BoxFuture, Either};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

/// The gRPC encoding name, as grpc-go and Thanos register it.
pub const ENCODING: &str = "snappy";

const GRPC_ENCODING: &str = "grpc-encoding";
const GRPC_ACCEPT_ENCODING: &str = "grpc-accept-encoding";
const GRPC_STATUS: &str = "grpc-status";

mod codec;
pub use codec::*;

impl SnappyError {
    /// The gRPC status a peer sees for this error (grpc-go answers decompression failures
    /// with `Internal` and oversized messages with `ResourceExhausted`).
    pub fn to_status(&self) -> Status {
        match self {
            SnappyError::TooLarge { .. } => Status::resource_exhausted(self.to_string()),
            _ => Status::internal(self.to_string()),
        }
    }
}

/// An HTTP body whose gRPC messages are rewritten by a [`FrameTransformer`] as they stream
/// through. Errors (the inner body's and the transformer's) surface as [`Status`], which tonic
/// hands to the caller unchanged.
#[derive(Debug)]
pub struct SnappyBody<B> {
    inner: B,
    transformer: FrameTransformer,
    done: bool,
}

impl<B> SnappyBody<B> {
    /// Wraps `inner`, rewriting its messages with `transformer`.
    pub fn new(inner: B, transformer: FrameTransformer) -> Self {
        SnappyBody {
            inner,
            transformer,
            done: false,
        }
    }
}

impl<B> http_body::Body for SnappyBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::from_error(e.into()))));
                }
                None => {
                    this.done = true;
                    return match this.transformer.finish() {
                        Ok(()) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(e.to_status()))),
                    };
                }
            };
            match frame.into_data() {
                Ok(data) => match this.transformer.push(data) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e.to_status())));
                    }
                },
                // Trailers end the stream: every message must be complete by now.
                Err(frame) => {
                    if let Err(e) = this.transformer.finish() {
                        this.done = true;
                        return Poll::Ready(Some(Err(e.to_status())));
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Rewriting changes the length; the inner body's hint would be wrong.
        SizeHint::default()
    }
}

fn is_snappy(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(ENCODING.as_bytes()))
}

fn accepts_snappy(headers: &HeaderMap) -> bool {
    headers.get_all(GRPC_ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|e| e.trim().eq_ignore_ascii_case(ENCODING))
        })
    })
}

/// Puts [`SnappyServer`] in front of a gRPC server's routes (`Server::builder().layer(…)`).
#[derive(Debug, Clone, Copy)]
pub struct SnappyServerLayer {
    max_message_bytes: usize,
}

impl SnappyServerLayer {
    /// Decompressed requests are limited to `max_message_bytes` per message (the same limit
    /// the service applies to uncompressed requests).
    pub fn new(max_message_bytes: usize) -> Self {
        SnappyServerLayer { max_message_bytes }
    }
}

impl<S> Layer<S> for SnappyServerLayer {
    type Service = SnappyServer<S>;

    fn layer(&self, inner: S) -> SnappyServer<S> {
        SnappyServer {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// Serves `grpc-encoding: snappy` calls for a tonic service that knows nothing of Snappy:
/// decompresses their requests and compresses their responses (when the client accepts
/// Snappy, as grpc-go does). Other calls are passed through as they are.
#[derive(Debug, Clone)]
pub struct SnappyServer<S> {
    inner: S,
    max_message_bytes: usize,
}

type CallFuture<F, E> = Either<F, BoxFuture<'static, Result<Response<Body>, E>>>;

impl<S> Service<Request<Body>> for SnappyServer<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if !is_snappy(req.headers(), GRPC_ENCODING) {
            return Either::Left(self.inner.call(req));
        }
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(GRPC_ENCODING);
        let compress_response = accepts_snappy(&parts.headers);
        let body = Body::new(SnappyBody::new(
            body,
            FrameTransformer::decompressor(self.max_message_bytes),
        ));
        let fut = self.inner.call(Request::from_parts(parts, body));
        Either::Right(Box::pin(async move {
            let resp = fut.await?;
            // A trailers-only response (an error, `grpc-status` in the headers) has no
            // messages, and tonic clients refuse an encoding they do not know even there.
            if !compress_response
                || resp.headers().contains_key(GRPC_ENCODING)
                || resp.headers().contains_key(GRPC_STATUS)
            {
                return Ok(resp);
            }
            let (mut parts, body) = resp.into_parts();
            parts
                .headers
                .insert(GRPC_ENCODING, HeaderValue::from_static(ENCODING));
            let body = Body::new(SnappyBody::new(body, FrameTransformer::compressor()));
            Ok(Response::from_parts(parts, body))
        }))
    }
}

/// A client channel that speaks Snappy when asked to (`--grpc-compression=snappy`): it
/// compresses every request message, sends `grpc-encoding: snappy` and
/// `grpc-accept-encoding: snappy`, and decompresses responses the server compressed. Built
/// with [`SnappyChannel::passthrough`] it changes nothing, so a client type can always hold a
/// `SnappyChannel` whatever the configuration.
#[derive(Debug, Clone)]
pub struct SnappyChannel<S> {
    inner: S,
    /// `Some(max decompressed bytes per response message)` when Snappy is on.
    snappy: Option<usize>,
}

impl<S> SnappyChannel<S> {
    /// Passes calls through unchanged.
    pub fn passthrough(inner: S) -> Self {
        SnappyChannel {
            inner,
            snappy: None,
        }
    }

    /// Compresses calls with Snappy; decompressed response messages are limited to
    /// `max_message_bytes` (use the client's own decoding limit).
    pub fn snappy(inner: S, max_message_bytes: usize) -> Self {
        SnappyChannel {
            inner,
            snappy: Some(max_message_bytes),
        }
    }

    /// Whether calls are compressed.
    pub fn is_snappy(&self) -> bool {
        self.snappy.is_some()
    }
}

impl<S> Service<Request<Body>> for SnappyChannel<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CallFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(limit) = self.snappy else {
            return Either::Left(self.inner.call(req));
        };
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert(GRPC_ENCODING, HeaderValue::from_static(ENCODING));
        let accept = match parts
            .headers
            .get(GRPC_ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
        {
            Some(other) if !other.is_empty() && !accepts_snappy(&parts.headers) => {
                HeaderValue::from_str(&format!("{ENCODING},{other}"))
                    .unwrap_or_else(|_| HeaderValue::from_static(ENCODING))
            }
            _ => HeaderValue::from_static(ENCODING),
        };
        parts.headers.insert(GRPC_ACCEPT_ENCODING, accept);
        let body = Body::new(SnappyBody::new(body, FrameTransformer::compressor()));
        let fut = self.inner.call(Request::from_parts(parts, body));
        Either::Right(Box::pin(decompress_response(fut, limit)))
    }
}

/// Undoes the server's Snappy compression of a response, if it used it.
async fn decompress_response<F, E>(fut: F, limit: usize) -> Result<Response<Body>, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    let resp = fut.await?;
    if !is_snappy(resp.headers(), GRPC_ENCODING) {
        return Ok(resp);
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(GRPC_ENCODING);
    let body = Body::new(SnappyBody::new(body, FrameTransformer::decompressor(limit)));
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use bytes::BytesMut;

    use http_body_util::BodyExt;

    use super::*;

    /// A gRPC message: prefix and payload.
    fn message(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![flag];
        m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// Deterministic test data: `compressible` repeats a short alphabet, otherwise xorshift noise.
    fn data(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                if compressible {
                    b"series{job=\"api\"} "[i % 18]
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    /// Messages of assorted sizes (empty, tiny, exactly one chunk, several chunks).
    fn payloads() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for (i, len) in [0, 1, 17, 1000, 65535, 65536, 65537, 200_000]
            .into_iter()
            .enumerate()
        {
            v.push(data(len, i as u64 + 1, i % 2 == 0));
            v.push(data(len, i as u64 + 100, i % 2 == 1));
        }
        v
    }

    /// Feeds `input` to `t` cut at `cuts` (sorted offsets); returns the concatenated output.
    fn feed(
        t: &mut FrameTransformer,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<u8>, SnappyError> {
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            out.extend_from_slice(&t.push(Bytes::copy_from_slice(&input[at..c]))?);
            at = c;
        }
        t.finish()?;
        Ok(out)
    }

    /// Splits a rewritten stream back into (flag, payload) messages.
    fn messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            out.push((b[0], b[5..5 + len].to_vec()));
            b = &b[5 + len..];
        }
        out
    }

    /// The stream identifier, an uncompressed chunk, a padding chunk, a skippable reserved
    /// chunk and a compressed chunk (literal `abc`, then a copy of 9 bytes at offset 3), built
    /// byte by byte from the framing specification. The CRCs were computed by an independent
    /// bitwise CRC-32C, not by this crate.
    fn golden_stream() -> Vec<u8> {
        let mut s = vec![0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59];
        s.extend_from_slice(&[0x01, 0x12, 0x00, 0x00, 0x2e, 0x1b, 0x01, 0x28]);
        s.extend_from_slice(b"Hello, Thanos!");
        s.extend_from_slice(&[0xfe, 0x02, 0x00, 0x00, 0x00, 0x00]);
        s.extend_from_slice(&[0x80, 0x01, 0x00, 0x00, 0x42]);
        s.extend_from_slice(&[0x00, 0x0b, 0x00, 0x00, 0x00, 0x0d, 0x65, 0x46]);
        s.extend_from_slice(&[0x0c, 0x08, b'a', b'b', b'c', 0x15, 0x03]);
        s
    }

    #[test]
    fn golden_framed_stream_decodes() {
        assert_eq!(
            crc32c::crc32c(b"123456789"),
            0xe306_9283,
            "CRC-32C check value"
        );
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
        let want = b"Hello, Thanos!abcabcabcabc";
        assert_eq!(
            &decompress_framed(&golden_stream(), 1 << 20).unwrap()[..],
            want
        );
        // The same bytes as a compressed gRPC message become the plain message.
        let mut t = FrameTransformer::decompressor(1 << 20);
        let out = feed(&mut t, &message(1, &golden_stream()), &[3, 11]).unwrap();
        assert_eq!(out, message(0, want));
        assert_eq!(t.transformed_messages(), 1);
        // And `snap`'s own framing reader agrees with the hand-built bytes.
        let mut got = Vec::new();
        snap::read::FrameDecoder::new(&golden_stream()[..])
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn golden_encoding_matches_gos_writer() {
        // 14 bytes do not compress by 1/8, so Go's writer (like ours) emits one uncompressed
        // chunk: these are exactly the bytes snappy.NewBufferedWriter produces.
        let mut out = BytesMut::new();
        compress_framed(b"Hello, Thanos!", &mut out).unwrap();
        assert_eq!(&out[..], &golden_stream()[..32]);
    }

    #[test]
    fn interoperates_with_snaps_framing() {
        for p in payloads() {
            // Ours → snap's reader.
            let mut ours = BytesMut::new();
            compress_framed(&p, &mut ours).unwrap();
            let mut got = Vec::new();
            snap::read::FrameDecoder::new(&ours[..])
                .read_to_end(&mut got)
                .unwrap();
            assert_eq!(got, p, "len {}", p.len());
            // snap's writer → ours.
            let mut w = snap::write::FrameEncoder::new(Vec::new());
            w.write_all(&p).unwrap();
            let theirs = w.into_inner().unwrap();
            assert_eq!(&decompress_framed(&theirs, 1 << 20).unwrap()[..], &p[..]);
        }
        // Compressible data really shrinks.
        let p = data(200_000, 1, true);
        let mut out = BytesMut::new();
        compress_framed(&p, &mut out).unwrap();
        assert!(out.len() < p.len() / 4, "{}", out.len());
    }

    #[test]
    fn round_trip_at_every_split() {
        let plain: Vec<u8> = payloads().iter().flat_map(|p| message(0, p)).collect();
        let mut c = FrameTransformer::compressor();
        let compressed = feed(&mut c, &plain, &[]).unwrap();
        // Every non-empty message was compressed; empty ones stay plain, as grpc-go leaves them.
        let ms = messages(&compressed);
        assert_eq!(ms.len(), payloads().len());
        for ((flag, _), p) in ms.iter().zip(payloads()) {
            assert_eq!(*flag, u8::from(!p.is_empty()));
        }
        assert_eq!(c.transformed_messages(), 14);

        // Multiple messages in one chunk.
        let mut d = FrameTransformer::decompressor(1 << 20);
        assert_eq!(feed(&mut d, &compressed, &[]).unwrap(), plain);

        // Every split point of a short stream (1, 2 and 3 cuts), both directions.
        let small: Vec<u8> = [&b""[..], b"a", b"hello hello hello hello", b"xyz"]
            .iter()
            .flat_map(|p| message(0, p))
            .collect();
        let small_c = feed(&mut FrameTransformer::compressor(), &small, &[]).unwrap();
        for (input, want, compress) in [(&small, &small_c, true), (&small_c, &small, false)] {
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let mut t = if compress {
                        FrameTransformer::compressor()
                    } else {
                        FrameTransformer::decompressor(1 << 20)
                    };
                    let got = feed(&mut t, input, &[i, j]).unwrap();
                    assert_eq!(&got, want, "cuts {i} {j}");
                }
            }
            for i in 0..=input.len() {
                let cuts: Vec<usize> = (0..=input.len()).step_by(i.max(1)).collect();
                let mut t = if compress {
                    FrameTransformer::compressor()
                } else {
                    FrameTransformer::decompressor(1 << 20)
                };
                assert_eq!(&feed(&mut t, input, &cuts).unwrap(), want, "every {i}");
            }
        }

        // Large messages in pseudo-random chunk sizes (as HTTP/2 frames arrive).
        let mut x = 7u64;
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < compressed.len() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            at += 1 + (x >> 33) as usize % 20_000;
            if at < compressed.len() {
                cuts.push(at);
            }
        }
        let mut d = FrameTransformer::decompressor(1 << 20);
        assert_eq!(feed(&mut d, &compressed, &cuts).unwrap(), plain);
    }

    #[test]
    fn uncompressed_messages_pass_through() {
        let mut z = BytesMut::new();
        compress_framed(b"zipped", &mut z).unwrap();
        let mut input = message(0, b"plain");
        input.extend(message(1, &z));
        input.extend(message(0, b""));
        let mut d = FrameTransformer::decompressor(1 << 20);
        let out = feed(&mut d, &input, &[2]).unwrap();
        assert_eq!(
            messages(&out),
            vec![
                (0, b"plain".to_vec()),
                (0, b"zipped".to_vec()),
                (0, Vec::new())
            ]
        );
        assert_eq!(d.transformed_messages(), 1);
    }

    fn decompress_err(payload: &[u8]) -> SnappyError {
        let mut d = FrameTransformer::decompressor(1 << 20);
        feed(&mut d, &message(1, payload), &[]).unwrap_err()
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let golden = golden_stream();
        // A flipped data byte: the CRC catches it.
        let mut bad = golden.clone();
        bad[20] ^= 1;
        let e = decompress_err(&bad);
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // A damaged snappy block inside a compressed chunk.
        let mut bad = golden.clone();
        let n = bad.len();
        bad[n - 2] = 0x7d; // copy length beyond what was written
        assert!(matches!(decompress_err(&bad), SnappyError::Corrupt { .. }));
        // Missing stream identifier, bad identifier, reserved chunk type, truncated chunk.
        let e = decompress_err(&golden[10..]);
        assert!(e.to_string().contains("identifier"), "{e}");
        let mut bad = golden.clone();
        bad[4] = b'S';
        assert!(decompress_err(&bad).to_string().contains("sNaPpY"));
        let mut bad = golden[..10].to_vec();
        bad.extend_from_slice(&[0x02, 0x00, 0x00, 0x00]);
        assert!(decompress_err(&bad).to_string().contains("0x02"));
        let e = decompress_err(&golden[..golden.len() - 1]);
        assert!(e.to_string().contains("claims"), "{e}");
        let e = decompress_err(&golden[..12]);
        assert!(e.to_string().contains("header"), "{e}");
        // Raw block snappy (what Prometheus remote read uses) is not the framing format.
        let raw = snap::raw::Encoder::new().compress_vec(b"block").unwrap();
        assert!(matches!(decompress_err(&raw), SnappyError::Corrupt { .. }));

        // Not gRPC framing at all.
        let mut d = FrameTransformer::decompressor(1 << 20);
        let e = d
            .push(Bytes::from_static(b"GET / HTTP/1.1\r\n"))
            .unwrap_err();
        assert!(matches!(e, SnappyError::BadFlag { flag: b'G' }), "{e}");
        // A stream that stops inside a message.
        let mut d = FrameTransformer::decompressor(1 << 20);
        let e = feed(&mut d, &message(1, &golden)[..20], &[]).unwrap_err();
        assert!(matches!(e, SnappyError::Truncated { have: 20, .. }), "{e}");
        // Compressing something already compressed.
        let mut c = FrameTransformer::compressor();
        assert!(matches!(
            c.push(Bytes::from(message(1, b"x"))),
            Err(SnappyError::AlreadyCompressed)
        ));
        // Every error names snappy in the status a peer sees.
        for e in [
            decompress_err(&bad),
            SnappyError::AlreadyCompressed,
            SnappyError::TooLarge { len: 2, limit: 1 },
        ] {
            assert!(e.to_status().message().starts_with("snappy: "), "{e}");
        }
    }

    #[test]
    fn limits_are_enforced_before_allocating() {
        // A message prefix claiming 4 GiB is refused from its prefix alone.
        let mut d = FrameTransformer::decompressor(1 << 20);
        let e = d
            .push(Bytes::from_static(&[1, 0xff, 0xff, 0xff, 0xff, 0]))
            .unwrap_err();
        assert!(matches!(e, SnappyError::TooLarge { .. }), "{e}");
        assert_eq!(e.to_status().code(), tonic::Code::ResourceExhausted);
        // A small payload that decompresses beyond the limit.
        let p = vec![0u8; 300_000];
        let mut z = BytesMut::new();
        compress_framed(&p, &mut z).unwrap();
        assert!(z.len() < 100_000);
        let mut d = FrameTransformer::decompressor(200_000);
        let e = feed(&mut d, &message(1, &z), &[]).unwrap_err();
        assert!(
            matches!(e, SnappyError::TooLarge { limit: 200_000, .. }),
            "{e}"
        );
        // Exactly at the limit is fine.
        let mut d = FrameTransformer::decompressor(300_000);
        assert_eq!(feed(&mut d, &message(1, &z), &[]).unwrap(), message(0, &p));
    }

    #[test]
    fn garbage_never_panics() {
        let golden = message(1, &golden_stream());
        let mut x = 99u64;
        for round in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut input = golden.clone();
            // Flip a few bytes anywhere (prefix, chunk headers, block data).
            for k in 0..1 + round % 4 {
                let at = ((x >> (8 * k)) as usize) % input.len();
                input[at] ^= (x >> 40) as u8 | 1;
            }
            let mut d = FrameTransformer::decompressor(1 << 16);
            let _ = feed(&mut d, &input, &[(x >> 20) as usize % input.len()]);
        }
    }

    /// A stand-in for tonic's routes: records what it was sent and answers with the request's
    /// own body (so a request's messages come back as the response's).
    #[derive(Clone, Default)]
    struct Echo {
        seen: std::sync::Arc<std::sync::Mutex<Vec<HeaderMap>>>,
    }

    impl Service<Request<Body>> for Echo {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<Body>) -> Self::Future {
            self.seen.lock().unwrap().push(req.headers().clone());
            if req.headers().contains_key("x-fail") {
                return std::future::ready(Ok(Status::internal("boom").into_http()));
            }
            std::future::ready(Ok(Response::new(req.into_body())))
        }
    }

    async fn call<S>(svc: &mut S, req: Request<Body>) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
        S::Error: std::fmt::Debug,
    {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        svc.call(req).await.unwrap()
    }

    fn request(headers: &[(&'static str, &'static str)], body: Vec<u8>) -> Request<Body> {
        let mut r = Request::new(Body::new(http_body_util::Full::new(Bytes::from(body))));
        for (k, v) in headers {
            r.headers_mut().insert(*k, HeaderValue::from_static(v));
        }
        r
    }

    async fn collect(b: Body) -> Result<Vec<u8>, Status> {
        Ok(b.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn server_layer_decompresses_requests_and_compresses_responses() {
        let plain: Vec<u8> = [&b"one"[..], b"two two two two"]
            .iter()
            .flat_map(|p| message(0, p))
            .collect();
        let compressed = feed(&mut FrameTransformer::compressor(), &plain, &[]).unwrap();
        let echo = Echo::default();
        let mut svc = SnappyServerLayer::new(1 << 20).layer(echo.clone());

        // Snappy in, snappy out.
        let resp = call(
            &mut svc,
            request(
                &[
                    (GRPC_ENCODING, "snappy"),
                    (GRPC_ACCEPT_ENCODING, "gzip, snappy"),
                ],
                compressed.clone(),
            ),
        )
        .await;
        assert_eq!(resp.headers()[GRPC_ENCODING], "snappy");
        let body = collect(resp.into_body()).await.unwrap();
        assert!(messages(&body).iter().all(|(flag, _)| *flag == 1));
        assert_eq!(
            feed(&mut FrameTransformer::decompressor(1 << 20), &body, &[]).unwrap(),
            plain
        );
        // tonic never saw the encoding it would refuse.
        assert!(!echo.seen.lock().unwrap()[0].contains_key(GRPC_ENCODING));

        // Snappy in, but the client does not accept it back: plain responses.
        let resp = call(
            &mut svc,
            request(&[(GRPC_ENCODING, "snappy")], compressed.clone()),
        )
        .await;
        assert!(!resp.headers().contains_key(GRPC_ENCODING));
        assert_eq!(collect(resp.into_body()).await.unwrap(), plain);

        // An error answered with headers only carries no encoding (tonic clients refuse
        // unknown encodings before reading the status).
        let resp = call(
            &mut svc,
            request(
                &[
                    (GRPC_ENCODING, "snappy"),
                    (GRPC_ACCEPT_ENCODING, "snappy"),
                    ("x-fail", "1"),
                ],
                compressed.clone(),
            ),
        )
        .await;
        assert!(!resp.headers().contains_key(GRPC_ENCODING));
        assert_eq!(resp.headers()[GRPC_STATUS], "13");
        echo.seen.lock().unwrap().pop();

        // Other traffic is untouched, headers included.
        let resp = call(
            &mut svc,
            request(&[(GRPC_ENCODING, "gzip")], compressed.clone()),
        )
        .await;
        assert!(!resp.headers().contains_key(GRPC_ENCODING));
        assert_eq!(collect(resp.into_body()).await.unwrap(), compressed);
        assert_eq!(echo.seen.lock().unwrap()[2][GRPC_ENCODING], "gzip");

        // A corrupt request surfaces as a status naming snappy when the service reads it.
        let mut bad = compressed.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x55;
        let resp = call(&mut svc, request(&[(GRPC_ENCODING, "snappy")], bad)).await;
        let e = collect(resp.into_body()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("snappy"), "{e}");
    }

    #[tokio::test]
    async fn client_channel_talks_to_server_layer() {
        let plain: Vec<u8> = (0..50)
            .flat_map(|i| message(0, &data(i * 3000, i as u64, i % 2 == 0)))
            .collect();
        let echo = Echo::default();
        let mut client =
            SnappyChannel::snappy(SnappyServerLayer::new(1 << 20).layer(echo.clone()), 1 << 20);
        assert!(client.is_snappy());
        let resp = call(&mut client, request(&[], plain.clone())).await;
        // The client removed the encoding tonic would refuse, and got the messages back.
        assert!(!resp.headers().contains_key(GRPC_ENCODING));
        assert_eq!(collect(resp.into_body()).await.unwrap(), plain);
        assert!(!echo.seen.lock().unwrap()[0].contains_key(GRPC_ENCODING));

        // What goes on the wire: compressed requests with both headers.
        let wire = Echo::default();
        let mut client = SnappyChannel::snappy(wire.clone(), 1 << 20);
        let resp = call(
            &mut client,
            request(&[(GRPC_ACCEPT_ENCODING, "gzip")], plain.clone()),
        )
        .await;
        let h = wire.seen.lock().unwrap()[0].clone();
        assert_eq!(h[GRPC_ENCODING], "snappy");
        assert_eq!(h[GRPC_ACCEPT_ENCODING], "snappy,gzip");
        let body = collect(resp.into_body()).await.unwrap();
        assert!(body.len() < plain.len());
        assert!(messages(&body).iter().skip(1).all(|(flag, _)| *flag == 1));

        // Pass-through changes nothing.
        let wire = Echo::default();
        let mut client = SnappyChannel::passthrough(wire.clone());
        let resp = call(&mut client, request(&[], plain.clone())).await;
        assert!(wire.seen.lock().unwrap()[0].is_empty());
        assert_eq!(collect(resp.into_body()).await.unwrap(), plain);
    }
}
