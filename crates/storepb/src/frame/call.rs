//! The querier's `/thanos.Store/Series` call without tonic's streaming decoder: the response
//! body's gRPC messages are cut out of the HTTP/2 DATA frames as they come.
//!
//! Why: tonic appends every DATA frame to one growing buffer before it knows where a message
//! ends, then grows the buffer again to the message's length, so each byte of a Series answer
//! was copied two to three times (about 64 MB of `memcpy` for a 30 MB answer, measured under
//! callgrind). Here a message that lies within one DATA frame, as most do, is a slice of the
//! frame (no copy), and one that spans frames is copied once, into a buffer of its exact
//! length. Chunk data stay slices of these messages all the way to the engine.
//!
//! The cutting itself is [`super::cut`]. Only uncompressed messages are read. Snappy (`--grpc-compression=snappy`) is undone below
//! this, by [`crate::snappy::SnappyChannel`]; a compressed message (flag 1) is an error that
//! names the call, and callers that ask tonic for gzip use tonic's own decoder instead.

use std::future::poll_fn;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};
use tower_service::Service;

use super::cut::{CutError, MessageCutter, PREFIX};
use crate::thanos::SeriesRequest;

/// Calls `/thanos.Store/Series` on `svc` and returns the answer's messages (see the module
/// docs). `max_message` bounds one message, as tonic's `max_decoding_message_size` does.
pub async fn call_series<S>(
    svc: &mut S,
    req: &SeriesRequest,
    max_message: usize,
) -> Result<SeriesMessages, Status>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map_err(|e| Status::unavailable(format!("store not ready: {}", e.into())))?;
    let len = req.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).map_err(|_| Status::internal("Series request too large"))?);
    req.encode(&mut buf)
        .map_err(|e| Status::internal(format!("encoding the Series request: {e}")))?;
    let mut request = Request::new(Body::new(http_body_util::Full::new(buf.freeze())));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static("/thanos.Store/Series");
    let h = request.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let response = svc
        .call(request)
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    // A call that fails at once answers with headers only ("Trailers-Only"), the status
    // among them.
    let headers_status = Status::from_header_map(response.headers());
    if let Some(st) = &headers_status
        && st.code() != Code::Ok
    {
        return Err(st.clone());
    }
    if response.status() != StatusCode::OK {
        return Err(Status::unknown(format!(
            "Series call answered HTTP {}",
            response.status()
        )));
    }
    let mut messages = SeriesMessages::new(response.into_body(), max_message);
    messages.status_ok = headers_status.is_some();
    Ok(messages)
}

/// The messages of one Series answer, in order.
///
/// [`SeriesMessages::message`] is cancel-safe: everything read is kept in `self`, so it can
/// be raced against a timeout and called again.
#[derive(Debug)]
pub struct SeriesMessages {
    body: Body,
    cutter: MessageCutter,
    ended: bool,
    /// Whether the call's status came, and was OK. An answer that ends without one was cut
    /// short (a proxy's reset reaches us as a clean end), as tonic and grpc-go treat it.
    status_ok: bool,
}

impl SeriesMessages {
    /// The messages of a response `body`, each at most `max_message` bytes.
    pub fn new(body: Body, max_message: usize) -> Self {
        SeriesMessages {
            body,
            cutter: MessageCutter::new(max_message),
            ended: false,
            status_ok: false,
        }
    }

    /// The next message; `None` once the call ended with status OK. A failed call, a
    /// compressed or oversized message and an answer cut short are errors.
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            if let Some(m) = self.cutter.next_message().map_err(status)? {
                return Ok(Some(m));
            }
            if self.ended {
                if !self.status_ok {
                    return Err(Status::unknown(
                        "Series answer ended without a grpc-status (cut short)",
                    ));
                }
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => self.cutter.push(d),
                    Err(frame) => {
                        if let Some(st) = frame.trailers_ref().and_then(Status::from_header_map) {
                            if st.code() != Code::Ok {
                                return Err(st);
                            }
                            self.status_ok = true;
                        }
                        self.ended = true;
                        self.cutter.finish().map_err(status)?;
                    }
                },
                Some(Err(st)) => return Err(st),
                None => {
                    self.ended = true;
                    self.cutter.finish().map_err(status)?;
                }
            }
        }
    }
}

fn status(e: CutError) -> Status {
    let msg = format!("reading the Series answer: {e}");
    match e {
        CutError::TooLarge { .. } => Status::out_of_range(msg),
        CutError::Compressed(_) | CutError::Truncated => Status::internal(msg),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http::HeaderMap;
    use http_body::Frame;

    use super::*;

    /// A response body handing out the given frames.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn messages(body: Vec<Frame<Bytes>>) -> SeriesMessages {
        SeriesMessages::new(Body::new(Frames(body.into())), 1 << 20)
    }

    fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            out.push(0);
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    fn trailers(status: &str) -> Frame<Bytes> {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_str(status).unwrap());
        t.insert("grpc-message", HeaderValue::from_static("boom"));
        Frame::trailers(t)
    }

    fn read_all(mut m: SeriesMessages) -> Result<Vec<Vec<u8>>, Status> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            while let Some(b) = m.message().await? {
                out.push(b.to_vec());
            }
            Ok(out)
        })
    }

    /// Every way of cutting the stream into DATA frames gives the same messages, empty
    /// ones and prefixes split across frames included.
    #[test]
    fn messages_survive_every_split() {
        let msgs = vec![b"first".to_vec(), Vec::new(), vec![7u8; 300], b"x".to_vec()];
        let wire = framed(&msgs);
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let frames = [&wire[..a], &wire[a..b], &wire[b..]]
                    .into_iter()
                    .map(|p| Frame::data(Bytes::copy_from_slice(p)))
                    .chain([trailers("0")])
                    .collect();
                assert_eq!(read_all(messages(frames)).unwrap(), msgs, "cut at {a}, {b}");
            }
        }
    }

    /// A message within one DATA frame is a slice of it, not a copy.
    #[test]
    fn a_message_within_a_frame_is_not_copied() {
        let frame = Bytes::from(framed(&[vec![1u8; 64], vec![2u8; 64]]));
        let start = frame.as_ptr() as usize;
        let mut m = messages(vec![Frame::data(frame.clone())]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (a, b) = rt.block_on(async {
            (
                m.message().await.unwrap().unwrap(),
                m.message().await.unwrap().unwrap(),
            )
        });
        assert_eq!(a.as_ptr() as usize, start + PREFIX);
        assert_eq!(b.as_ptr() as usize, start + 2 * PREFIX + 64);
    }

    #[test]
    fn failures_are_errors() {
        // A failed call's status, from the trailers.
        let wire = framed(&[b"ok".to_vec()]);
        let st = read_all(messages(vec![
            Frame::data(Bytes::from(wire.clone())),
            trailers("14"),
        ]))
        .unwrap_err();
        assert_eq!((st.code(), st.message()), (Code::Unavailable, "boom"));
        // Whole messages but no status: cut short.
        let st = read_all(messages(vec![Frame::data(Bytes::from(wire.clone()))])).unwrap_err();
        assert_eq!(st.code(), Code::Unknown, "{st:?}");
        // Cut inside a message or inside a prefix.
        for cut in [2, PREFIX + 1] {
            let st = read_all(messages(vec![Frame::data(Bytes::copy_from_slice(
                &wire[..cut],
            ))]))
            .unwrap_err();
            assert!(st.message().contains("unexpected EOF"), "{st:?}");
        }
        // Compressed, and too large.
        let mut compressed = wire.clone();
        compressed[0] = 1;
        let st = read_all(messages(vec![Frame::data(Bytes::from(compressed))])).unwrap_err();
        assert!(st.message().contains("compressed"), "{st:?}");
        let m = SeriesMessages::new(
            Body::new(Frames(
                vec![Frame::data(Bytes::from(framed(&[vec![0; 100]])))].into(),
            )),
            99,
        );
        let st = read_all(m).unwrap_err();
        assert_eq!(st.code(), Code::OutOfRange);
    }
}
