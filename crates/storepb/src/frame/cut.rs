//! gRPC messages cut out of a response body that arrives in pieces (HTTP/2 DATA frames), for
//! `frame::call`. Free of tonic and HTTP types (it needs only `bytes` and `thiserror`), so
//! that the fuzz target `grpc_messages` compiles it by path and checks it against a plain
//! parser of the whole stream, however the stream is split.
//!
//! A message is a 5-byte prefix (a compressed flag, then a big-endian length) and its bytes.
//! One that lies within a piece is a slice of the piece (no copy); one that spans pieces is
//! copied once, into a buffer of its exact length.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The gRPC message prefix: a compressed flag and a big-endian length.
pub const PREFIX: usize = 5;

/// Why a body does not cut into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutError {
    /// A compressed message (flag 1): this reader takes uncompressed messages only.
    #[error("a compressed message (flag {0}), which this call cannot read")]
    Compressed(u8),
    /// A message longer than the caller's limit.
    #[error("decoded message length too large: found {len} bytes, the limit is: {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The body ended inside a prefix or a message.
    #[error("the answer ended inside a message (unexpected EOF)")]
    Truncated,
}

/// The state between pieces.
#[derive(Debug)]
pub struct MessageCutter {
    /// The unread rest of the last piece.
    data: Bytes,
    /// A prefix split across pieces, as far as received.
    prefix: [u8; PREFIX],
    prefix_len: usize,
    /// A message that spans pieces: its bytes so far and its length.
    partial: Option<(BytesMut, usize)>,
    max_message: usize,
}

impl MessageCutter {
    /// A cutter refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        MessageCutter {
            data: Bytes::new(),
            prefix: [0; PREFIX],
            prefix_len: 0,
            partial: None,
            max_message,
        }
    }

    /// Adds the next piece of the body. Call [`MessageCutter::next_message`] until it gives `None`
    /// before pushing again.
    pub fn push(&mut self, piece: Bytes) {
        if self.data.is_empty() {
            self.data = piece;
        } else {
            // Only when the caller pushes before taking every message out: keep both.
            let mut joined = BytesMut::with_capacity(self.data.len() + piece.len());
            joined.put(std::mem::take(&mut self.data));
            joined.put(piece);
            self.data = joined.freeze();
        }
    }

    /// The next whole message, if what was pushed holds one. After `None`, everything pushed
    /// has been taken in.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, CutError> {
        if let Some((mut buf, len)) = self.partial.take() {
            let take = (len - buf.len()).min(self.data.len());
            buf.put(self.data.split_to(take));
            if buf.len() < len {
                self.partial = Some((buf, len));
                return Ok(None);
            }
            return Ok(Some(buf.freeze()));
        }
        while self.prefix_len < PREFIX && !self.data.is_empty() {
            self.prefix[self.prefix_len] = self.data.get_u8();
            self.prefix_len += 1;
        }
        if self.prefix_len < PREFIX {
            return Ok(None);
        }
        let [flag, l0, l1, l2, l3] = self.prefix;
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        if flag != 0 {
            return Err(CutError::Compressed(flag));
        }
        if len > self.max_message {
            return Err(CutError::TooLarge {
                len,
                max: self.max_message,
            });
        }
        self.prefix_len = 0;
        if self.data.len() >= len {
            return Ok(Some(self.data.split_to(len)));
        }
        let mut buf = BytesMut::with_capacity(len);
        buf.put(std::mem::take(&mut self.data));
        self.partial = Some((buf, len));
        Ok(None)
    }

    /// The body ended: fine between messages, an error inside one.
    pub fn finish(&self) -> Result<(), CutError> {
        if self.prefix_len > 0 || self.partial.is_some() || !self.data.is_empty() {
            return Err(CutError::Truncated);
        }
        Ok(())
    }
}
