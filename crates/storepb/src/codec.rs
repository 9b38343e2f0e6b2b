//! The codec of every generated Store and Info API client and server (`codec_path` in
//! `build.rs`): prost's encoding and decoding, except that a message's buffer room is
//! reserved once, at its encoded length, before it is written.
//!
//! Why: tonic encodes each message into a buffer that starts at 8 KiB and grows by doubling
//! as prost writes into it, so a 1 MB Series frame is copied about once more while it grows,
//! through a chain of ever larger allocations (the larger ones fresh pages from the kernel).
//! The store gateway sends tens of megabytes of such frames for one large query. Reserving
//! the frame's length first makes it one allocation and one copy. `encoded_len` is cheap for
//! the gateway's frames (`batch::EncodedSeries` knows its length) and for the small messages
//! of the other calls. The bytes are prost's: every Store API test runs through this codec.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// Prost's codec with exact buffer reservation (see the module docs).
#[derive(Debug)]
pub struct StoreCodec<T, U> {
    _messages: PhantomData<fn(T) -> U>,
}

impl<T, U> Default for StoreCodec<T, U> {
    fn default() -> Self {
        StoreCodec {
            _messages: PhantomData,
        }
    }
}

impl<T, U> Codec for StoreCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> ReservingEncoder<T> {
        ReservingEncoder::default()
    }

    fn decoder(&mut self) -> ProstDecoder<U> {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}

/// Encodes a message with prost after reserving its encoded length.
#[derive(Debug)]
pub struct ReservingEncoder<T> {
    _message: PhantomData<fn(T)>,
}

impl<T> Default for ReservingEncoder<T> {
    fn default() -> Self {
        ReservingEncoder {
            _message: PhantomData,
        }
    }
}

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}
