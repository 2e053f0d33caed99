//! A worker's pool of I/O buffers.
//!
//! A connection takes a buffer only while bytes are in flight (between a read and the write
//! that drains it) and gives it back at once, so an idle connection holds no buffer at all and
//! a worker needs about as many buffers as it has connections moving bytes at the same
//! instant. The pool is worker-local (`Rc`, no lock) and keeps at most `max_cached` free
//! buffers so a burst does not pin memory forever.

use std::cell::RefCell;

#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    max_cached: usize,
    free: RefCell<Vec<Box<[u8]>>>,
}

impl BufferPool {
    pub fn new(size: usize, max_cached: usize) -> Self {
        BufferPool {
            size,
            max_cached,
            free: RefCell::new(Vec::new()),
        }
    }

    pub fn take(&self) -> Box<[u8]> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    pub fn put(&self, buf: Box<[u8]>) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.max_cached && buf.len() == self.size {
            free.push(buf);
        }
    }

    /// Free buffers held now.
    pub fn cached(&self) -> usize {
        self.free.borrow().len()
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
}
