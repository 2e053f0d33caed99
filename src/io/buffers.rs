//! A worker's pool of I/O buffers.
//!
//! A connection takes a buffer only while bytes are in flight (between a read and the write
//! that drains it) and gives it back at once, so an idle connection holds no buffer at all and
//! a worker needs about as many buffers as it has connections moving bytes at the same
//! instant. The pool is worker-local (`Rc`, no lock) and keeps at most `max_cached` free
//! buffers so a burst does not pin memory forever.

use std::cell::{Cell, RefCell};

#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    max_cached: usize,
    free: RefCell<Vec<Box<[u8]>>>,
    /// Buffers taken and not given back yet.
    lent: Cell<usize>,
}

impl BufferPool {
    pub fn new(size: usize, max_cached: usize) -> Self {
        BufferPool {
            size,
            max_cached,
            free: RefCell::new(Vec::new()),
            lent: Cell::new(0),
        }
    }

    pub fn take(&self) -> Box<[u8]> {
        self.lent.set(self.lent.get() + 1);
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    pub fn put(&self, buf: Box<[u8]>) {
        self.lent.set(self.lent.get().saturating_sub(1));
        let mut free = self.free.borrow_mut();
        if free.len() < self.max_cached && buf.len() == self.size {
            free.push(buf);
        }
    }

    /// The size of each buffer (`buffer_size`).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Free buffers held now.
    pub fn cached(&self) -> usize {
        self.free.borrow().len()
    }

    /// Buffers out of the pool now (taken, not yet given back): what connections hold.
    pub fn lent(&self) -> usize {
        self.lent.get()
    }
}

/// Growable byte buffers for protocol engines that frame requests (Redis, Memcached): taken
/// while a connection has bytes to parse or write, given back when it is idle again. Buffers
/// that grew far past `size` (a large value) go back to the allocator instead.
#[derive(Debug)]
pub struct VecPool {
    size: usize,
    max_cached: usize,
    free: RefCell<Vec<Vec<u8>>>,
}

impl VecPool {
    pub fn new(size: usize, max_cached: usize) -> Self {
        VecPool {
            size,
            max_cached,
            free: RefCell::new(Vec::new()),
        }
    }

    /// An empty buffer with room for at least `size` bytes.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// Gives `buf` back; it is left empty without memory.
    pub fn put(&self, buf: &mut Vec<u8>) {
        let mut v = std::mem::take(buf);
        if v.capacity() < self.size || v.capacity() > 4 * self.size {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < self.max_cached {
            v.clear();
            free.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_caps() {
        let p = BufferPool::new(16, 1);
        let a = p.take();
        let b = p.take();
        assert_eq!(a.len(), 16);
        p.put(a);
        p.put(b);
        assert_eq!(p.cached(), 1);
        p.put(vec![0; 8].into_boxed_slice());
        assert_eq!(p.cached(), 1);
    }

    #[test]
    fn vec_pool_keeps_only_ordinary_buffers() {
        let p = VecPool::new(16, 4);
        let mut a = p.take();
        a.extend_from_slice(b"abc");
        p.put(&mut a);
        assert_eq!(a.capacity(), 0);
        let b = p.take();
        assert!(b.is_empty() && b.capacity() >= 16);
        let mut huge = Vec::with_capacity(1000);
        p.put(&mut huge);
        assert_eq!(p.free.borrow().len(), 0);
    }
}
