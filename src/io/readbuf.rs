//! A read buffer for framed protocols: bytes arrive at the end, whole frames leave from the
//! front, and a frame that has not fully arrived stays put (its offsets relative to the front
//! stay valid across reads, which is what resumable parsers rely on).
//!
//! The memory is a worker pool buffer, taken on the first read and given back whenever the
//! buffer is empty, so an idle connection holds none. It grows (doubling) only for a frame
//! larger than the buffer. Reads go through [`super::pump::read_some`]: a read shorter than the
//! free space drained the socket, so no second `recv` is spent learning that it would block.

use std::io;

use tokio::net::TcpStream;

use super::buffers::BufferPool;
use super::pump::read_some;

#[derive(Debug, Default)]
pub struct ReadBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// The bytes received and not consumed yet.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops `n` bytes from the front.
    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// One read from `s` into the free space (0: end of stream).
    pub fn read_from(&mut self, s: &TcpStream, pool: &BufferPool) -> io::Result<usize> {
        if self.data.is_empty() {
            self.data = pool.take();
        } else if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let mut bigger = vec![0u8; self.data.len() * 2].into_boxed_slice();
                bigger[..self.end].copy_from_slice(&self.data[..self.end]);
                let old = std::mem::replace(&mut self.data, bigger);
                pool.put(old);
            }
        }
        let n = read_some(s, &mut self.data[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Gives the memory back to `pool` if nothing is buffered.
    pub fn release(&mut self, pool: &BufferPool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.put(std::mem::take(&mut self.data));
        }
    }
}
