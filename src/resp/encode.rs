//! Encoding commands as RESP multibulk requests (what a client sends), batched for vectored
//! writes: the proxy sends forwarded commands to the leader with it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The writer stops taking queued commands into one write once it holds this many bytes.
pub const WRITE_BATCH_BYTES: usize = 1024 * 1024;
/// Arguments at least this long are written from their own buffer instead of being copied.
const INLINE_ARG_MAX: usize = 16 * 1024;
/// Most buffers handed to one vectored write.
const MAX_IOVECS: usize = 64;
/// Capacity the writer keeps between batches; a larger encode buffer is released.
const RETAINED_WRITE_CAPACITY: usize = 4 * WRITE_BATCH_BYTES;

/// Commands encoded as RESP multibulk, ready for one vectored write.
///
/// Short arguments are copied into a shared buffer; long ones are written from their own
/// `Bytes`, so a batch costs at most about [`WRITE_BATCH_BYTES`] of copies.
#[derive(Default)]
pub struct CommandBatch {
    segments: VecDeque<Bytes>,
    current: BytesMut,
    /// Bytes in the batch, copied or not.
    pub bytes: usize,
}

impl CommandBatch {
    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Appends one command as a RESP multibulk.
    pub fn push_command(&mut self, args: &[Bytes]) {
        self.header(b'*', args.len());
        for arg in args {
            self.header(b'$', arg.len());
            if arg.len() >= INLINE_ARG_MAX {
                self.seal();
                self.segments.push_back(arg.clone());
            } else {
                self.current.extend_from_slice(arg);
            }
            self.current.extend_from_slice(b"\r\n");
            self.bytes += arg.len() + 2;
        }
    }

    /// Appends `*n\r\n` or `$n\r\n`.
    fn header(&mut self, kind: u8, len: usize) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(len).as_bytes();
        self.current.extend_from_slice(&[kind]);
        self.current.extend_from_slice(digits);
        self.current.extend_from_slice(b"\r\n");
        self.bytes += digits.len() + 3;
    }

    /// Moves the copied bytes so far into their own segment.
    fn seal(&mut self) {
        if !self.current.is_empty() {
            self.segments.push_back(self.current.split().freeze());
        }
    }

    /// Writes everything queued (vectored) and empties the batch.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> io::Result<()> {
        self.seal();
        while !self.segments.is_empty() {
            let written = {
                let slices: Vec<IoSlice<'_>> = self
                    .segments
                    .iter()
                    .take(MAX_IOVECS)
                    .map(|segment| IoSlice::new(segment))
                    .collect();
                out.write_vectored(&slices).await?
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut left = written;
            while left > 0 {
                let Some(front) = self.segments.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.segments.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        self.bytes = 0;
        if self.current.capacity() > RETAINED_WRITE_CAPACITY {
            self.current = BytesMut::new();
        }
        Ok(())
    }

    /// Everything queued, as one buffer (tests).
    #[cfg(test)]
    pub fn concatenated(mut self) -> Vec<u8> {
        self.seal();
        self.segments.iter().flat_map(|s| s.to_vec()).collect()
    }
}
