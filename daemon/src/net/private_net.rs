//! The share's private network: every TCP connection is encrypted under a key derived from the
//! share secret before anything else runs on it (multistream-select, Noise), so a machine
//! without the secret gets no handshake and no protocol names, only bytes that look random,
//! and cannot start one.
//!
//! The construction is libp2p `pnet`'s: each side sends a random 24-byte nonce, then each
//! direction is XOR-ed with a keystream under the share key and its sender's nonce. The
//! keystream is ChaCha20 where `pnet` has XSalsa20: RustCrypto's Salsa20 is portable code only
//! (about 0.67 GB/s on the 2-core machine of docs/benchmarks.md, a quarter of both cores while
//! a 1 GiB file went from one daemon to another), its ChaCha20 picks AVX2 or SSE2 at run time
//! (about 2.3 GB/s there). As XChaCha20 does, a direction's key is derived from the share key
//! and the nonce (here with BLAKE3's keyed hash), and ChaCha20 runs under it with the 64-bit
//! block counter of the original construction: RustCrypto's XChaCha20 counts blocks in 32
//! bits and would run out (and panic) after 256 GiB on one connection. The layer adds no
//! integrity of its own: Noise, inside it, authenticates every byte; a byte changed on the way fails Noise's tag and ends the
//! connection. A peer still running the `pnet` layer decrypts this one's bytes to garbage and
//! the handshake fails, as with a wrong secret.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use chacha20::ChaCha20Legacy;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rand::RngCore;

const NONCE: usize = 24;
/// The most of one write taken at a time (and so the buffer a connection holds while it
/// writes): a Noise frame and its length prefix.
const WRITE_BUFFER: usize = (64 << 10) + 2;

/// The private network's key: BLAKE3 in key-derivation mode over the share secret, so the
/// secret itself never serves two purposes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShareKey([u8; 32]);

impl ShareKey {
    pub fn of_secret(secret: &[u8; 32]) -> ShareKey {
        ShareKey(blake3::derive_key(
            "chorus 2026 private network key v2",
            secret,
        ))
    }
}

/// One direction's keystream: ChaCha20 under a key of its own, BLAKE3 keyed by the share key
/// over the sender's nonce, counting blocks in 64 bits (2^70 bytes before it would repeat).
fn keystream(key: &ShareKey, nonce: &[u8; NONCE]) -> ChaCha20Legacy {
    let direction = blake3::keyed_hash(&key.0, nonce);
    ChaCha20Legacy::new(direction.as_bytes().into(), &[0u8; 8].into())
}

impl fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareKey(..)")
    }
}

/// Exchanges nonces on a fresh connection and returns it encrypted both ways. Fails when the
/// connection does, or when the peer sends back this side's own nonce (a reflector: both
/// directions would share a keystream).
pub async fn handshake<S>(key: ShareKey, mut socket: S) -> io::Result<Private<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut local = [0u8; NONCE];
    rand::thread_rng().fill_bytes(&mut local);
    socket.write_all(&local).await?;
    socket.flush().await?;
    let mut remote = [0u8; NONCE];
    socket.read_exact(&mut remote).await?;
    if remote == local {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer sent back this side's nonce",
        ));
    }
    Ok(Private {
        inner: socket,
        read: keystream(&key, &remote),
        write: keystream(&key, &local),
        out: Vec::new(),
        sent: 0,
    })
}

/// A connection inside the private network: what is read is decrypted in place; what is
/// written is encrypted into a buffer of at most [`WRITE_BUFFER`] bytes and written from there.
pub struct Private<S> {
    inner: S,
    read: ChaCha20Legacy,
    write: ChaCha20Legacy,
    /// Encrypted bytes taken from a write; `out[sent..]` not yet written to `inner`.
    out: Vec<u8>,
    sent: usize,
}

impl<S: AsyncWrite + Unpin> Private<S> {
    /// Writes what is left of `out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Private<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.read.apply_keystream(&mut buf[..n]);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Private<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(WRITE_BUFFER);
        this.out.extend_from_slice(&buf[..n]);
        this.write.apply_keystream(&mut this.out);
        // The bytes are taken (and their keystream spent) whether or not the socket takes them
        // now: what it does not is written by the next write, flush or close, and an error
        // writing them is told then (told now, the caller would write them again).
        let _ = this.poll_drain(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;

    use super::*;

    /// One end of an in-memory connection whose writes take at most `max` bytes at a time
    /// and every other write is `Pending` first (a socket whose buffer is full now and then).
    struct Stingy {
        from: Cursor<Vec<u8>>,
        to: Vec<u8>,
        max: usize,
        turn: bool,
    }

    impl AsyncRead for Stingy {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let max = self.max.min(buf.len());
            Pin::new(&mut self.from).poll_read(cx, &mut buf[..max])
        }
    }

    impl AsyncWrite for Stingy {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.turn = !self.turn;
            if self.turn {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = self.max.min(buf.len());
            self.to.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn stingy(incoming: Vec<u8>, max: usize) -> Stingy {
        Stingy {
            from: Cursor::new(incoming),
            to: Vec::new(),
            max,
            turn: false,
        }
    }

    /// Runs one side's handshake against bytes the other side "sent" (its nonce and its
    /// encrypted `payload`), writes `reply`, and returns what that side read and wrote.
    fn one_side(
        key: ShareKey,
        peer_nonce: [u8; NONCE],
        peer_stream: &[u8],
        reply: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let mut incoming = peer_nonce.to_vec();
        incoming.extend_from_slice(peer_stream);
        futures::executor::block_on(async {
            let mut conn = handshake(key, stingy(incoming, 7000)).await.unwrap();
            let mut read = vec![0u8; peer_stream.len()];
            conn.read_exact(&mut read).await.unwrap();
            conn.write_all(reply).await.unwrap();
            conn.flush().await.unwrap();
            (read, conn.inner.to)
        })
    }

    #[test]
    fn bytes_cross_encrypted_and_come_out_as_sent_through_short_writes() {
        let key = ShareKey::of_secret(&[9; 32]);
        let peer_nonce = [5u8; NONCE];
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut on_wire = sent.clone();
        keystream(&key, &peer_nonce).apply_keystream(&mut on_wire);
        let reply: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();

        let (read, written) = one_side(key, peer_nonce, &on_wire, &reply);
        assert_eq!(read, sent, "decrypted as the peer's keystream says");
        let (nonce, body) = written.split_at(NONCE);
        assert_eq!(
            body.len(),
            reply.len(),
            "every byte written once, none lost to Pending"
        );
        assert_ne!(body, &reply[..], "nothing goes out in the clear");
        let mut decrypted = body.to_vec();
        let nonce: [u8; NONCE] = nonce.try_into().unwrap();
        keystream(&key, &nonce).apply_keystream(&mut decrypted);
        assert_eq!(decrypted, reply);
    }

    #[test]
    fn a_connection_may_carry_more_than_256_gib_each_way() {
        use chacha20::cipher::StreamCipherSeek;
        // XChaCha20's 32-bit block counter ends at 256 GiB (and `apply_keystream` panics);
        // this keystream's goes on.
        let mut ks = keystream(&ShareKey::of_secret(&[4; 32]), &[6; NONCE]);
        ks.seek((256u64 << 30) - 32);
        let mut bytes = [0u8; 4096];
        ks.apply_keystream(&mut bytes);
        assert!(bytes.iter().any(|&b| b != 0));
    }

    #[test]
    fn another_secret_reads_garbage_and_a_reflected_nonce_is_refused() {
        let key = ShareKey::of_secret(&[1; 32]);
        let other = ShareKey::of_secret(&[2; 32]);
        assert_ne!(key, other);
        let peer_nonce = [3u8; NONCE];
        let mut on_wire = b"/multistream/1.0.0\n".to_vec();
        keystream(&other, &peer_nonce).apply_keystream(&mut on_wire);
        let (read, _) = one_side(key, peer_nonce, &on_wire, b"");
        assert_ne!(read, b"/multistream/1.0.0\n");

        // A peer that echoes every byte sends this side's nonce back.
        struct Echo(Vec<u8>);
        impl AsyncRead for Echo {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Poll::Ready(Ok(n))
            }
        }
        impl AsyncWrite for Echo {
            fn poll_write(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.0.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let err = futures::executor::block_on(handshake(key, Echo(Vec::new())))
            .err()
            .expect("a reflector is refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
