//! A request-response codec for length-prefixed frames: a 4-byte big-endian length, then that
//! many bytes, refused above a bound before anything is allocated. The frames' content (a
//! chorus-proto envelope, or a JSON Raft RPC) is decoded by the receiver, under its own limits.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

/// Frames up to this size are copied behind their length prefix and written at once.
const ONE_WRITE: usize = 64 << 10;

/// Bytes counted at the transport (frames in and out, length prefixes included).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// The codec: requests and responses are byte frames of at most `max` bytes.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    pub max: usize,
    pub counters: Arc<Counters>,
}

impl FrameCodec {
    pub fn new(max: usize, counters: Arc<Counters>) -> Self {
        FrameCodec { max, counters }
    }

    async fn read<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let mut header = [0u8; 4];
        io.read_exact(&mut header).await?;
        let len = u32::from_be_bytes(header) as usize;
        if len > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes exceeds the limit of {}", self.max),
            ));
        }
        // Allocated as bytes arrive: a peer that declares 16 MiB and sends ten bytes costs ten.
        let mut buf = Vec::with_capacity(len.min(64 << 10));
        (&mut *io).take(len as u64).read_to_end(&mut buf).await?;
        if buf.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame truncated at {} of {len} bytes", buf.len()),
            ));
        }
        self.counters
            .received
            .fetch_add(4 + len as u64, Ordering::Relaxed);
        Ok(buf)
    }

    async fn write<T: AsyncWrite + Unpin + Send>(&self, io: &mut T, data: &[u8]) -> io::Result<()> {
        if data.len() > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {}",
                    data.len(),
                    self.max
                ),
            ));
        }
        // The bound above keeps the length within u32. A small frame goes out in one write:
        // every write is a yamux frame, a Noise frame and a TCP segment of its own.
        let prefix = (data.len() as u32).to_be_bytes();
        if data.len() <= ONE_WRITE {
            let mut buf = Vec::with_capacity(4 + data.len());
            buf.extend_from_slice(&prefix);
            buf.extend_from_slice(data);
            io.write_all(&buf).await?;
        } else {
            io.write_all(&prefix).await?;
            io.write_all(data).await?;
        }
        io.flush().await?;
        self.counters
            .sent
            .fetch_add(4 + data.len() as u64, Ordering::Relaxed);
        tracing::trace!(bytes = 4 + data.len(), "frame sent");
        Ok(())
    }
}

impl Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        futures::executor::block_on(async {
            let codec = FrameCodec::new(16, Arc::default());
            let mut wire = Vec::new();
            codec.write(&mut wire, b"hello").await.unwrap();
            assert_eq!(wire.len(), 9);
            let back = codec.read(&mut wire.as_slice()).await.unwrap();
            assert_eq!(back, b"hello");
            assert!(codec.write(&mut Vec::new(), &[0u8; 17]).await.is_err());
            let mut huge = (1u32 << 30).to_be_bytes().to_vec();
            huge.extend_from_slice(b"xx");
            assert!(codec.read(&mut huge.as_slice()).await.is_err());
            let truncated = [0u8, 0, 0, 5, b'a'];
            assert!(codec.read(&mut truncated.as_slice()).await.is_err());
        });
    }
}
