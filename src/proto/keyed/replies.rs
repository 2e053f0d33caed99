//! The replies owed to one client, in the order it sent its requests.
//!
//! A client of a sharding proxy pipelines requests that go to different servers, whose replies
//! come back in any order across servers. Each request takes a numbered slot here; a server
//! connection delivers a reply into its slot; the replies that are complete from the front are
//! appended to one output buffer for the client task to write in one syscall. The common case,
//! a reply for the oldest open slot, is copied straight into that buffer: no allocation.
//!
//! A request split across shards (MGET) has one slot and several parts; the protocol's
//! [`Merge`] combines the parts when the last arrives. This module knows nothing of RESP or
//! memcache bytes.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::io::notify::LocalNotify;

/// Combines the replies of the parts of a split request into the client's reply.
pub trait Merge {
    /// Takes the reply of part `part` (an error reply is passed as such).
    fn part(&mut self, part: u32, reply: &[u8]);
    /// Writes the merged reply.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// Where a reply goes: a slot (request sequence number) and, for split requests, a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub seq: u64,
    pub part: u32,
}

#[derive(Debug)]
enum Slot<M> {
    Waiting,
    /// The client asked for no reply (memcache `noreply`): the server's is dropped.
    Silent,
    Done(Vec<u8>),
    Split {
        left: u32,
        merge: Box<M>,
    },
}

#[derive(Debug)]
struct Inner<M> {
    slots: VecDeque<Slot<M>>,
    /// Sequence number of `slots[0]`.
    first: u64,
    /// Complete replies, in order, not yet written to the client.
    out: Vec<u8>,
    /// The client is gone: deliveries are dropped.
    gone: bool,
}

/// One client's reply queue, shared (worker-locally) with the server connections that owe it
/// replies.
#[derive(Debug)]
pub struct Replies<M> {
    inner: RefCell<Inner<M>>,
    /// Set when `out` gained bytes.
    pub ready: LocalNotify,
}

impl<M: Merge> Default for Replies<M> {
    fn default() -> Self {
        Replies {
            inner: RefCell::new(Inner {
                slots: VecDeque::new(),
                first: 0,
                out: Vec::new(),
                gone: false,
            }),
            ready: LocalNotify::default(),
        }
    }
}

impl<M: Merge> Replies<M> {
    /// A slot for a request forwarded whole; `silent` drops whatever the server answers.
    pub fn open(&self, silent: bool) -> Tag {
        self.push(if silent { Slot::Silent } else { Slot::Waiting })
    }

    /// A slot for a request split in `parts` parts (at least 2).
    pub fn open_split(&self, parts: u32, merge: M) -> u64 {
        self.push(Slot::Split {
            left: parts,
            merge: Box::new(merge),
        })
        .seq
    }

    /// A reply produced locally (PING, errors): it takes its turn behind earlier requests.
    pub fn local(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut i = self.inner.borrow_mut();
        if i.slots.is_empty() {
            write(&mut i.out);
            drop(i);
            self.ready.notify();
        } else {
            let mut v = Vec::new();
            write(&mut v);
            drop(i);
            self.push(Slot::Done(v));
        }
    }

    fn push(&self, slot: Slot<M>) -> Tag {
        let mut i = self.inner.borrow_mut();
        let seq = i.first + i.slots.len() as u64;
        i.slots.push_back(slot);
        Tag { seq, part: 0 }
    }

    /// Requests whose replies have not been completed yet.
    pub fn in_flight(&self) -> usize {
        self.inner.borrow().slots.len()
    }

    /// A server's reply (or a locally made error reply) for `tag`.
    pub fn deliver(&self, tag: Tag, reply: &[u8]) {
        let mut guard = self.inner.borrow_mut();
        let i = &mut *guard;
        if i.gone {
            return;
        }
        let Some(index) = tag.seq.checked_sub(i.first) else {
            return;
        };
        let Some(slot) = i.slots.get_mut(index as usize) else {
            return;
        };
        match slot {
            Slot::Waiting if index == 0 => {
                i.out.extend_from_slice(reply);
                i.slots.pop_front();
                i.first += 1;
            }
            Slot::Waiting => *slot = Slot::Done(reply.to_vec()),
            Slot::Silent => *slot = Slot::Done(Vec::new()),
            Slot::Split { left, merge } => {
                merge.part(tag.part, reply);
                *left -= 1;
                if *left > 0 {
                    return;
                }
                let mut v = Vec::new();
                merge.finish(&mut v);
                *slot = Slot::Done(v);
            }
            Slot::Done(_) => return,
        }
        // Move every complete reply at the front to the output.
        let mut wrote = index == 0;
        while let Some(Slot::Done(_)) = i.slots.front() {
            if let Some(Slot::Done(v)) = i.slots.pop_front() {
                i.out.extend_from_slice(&v);
            }
            i.first += 1;
            wrote = true;
        }
        drop(guard);
        if wrote {
            self.ready.notify();
        }
    }

    /// Moves the complete replies into `buf` (which the caller writes to the client).
    /// Returns whether there was anything.
    pub fn take_output(&self, buf: &mut Vec<u8>) -> bool {
        let mut i = self.inner.borrow_mut();
        if i.out.is_empty() {
            return false;
        }
        if buf.is_empty() {
            std::mem::swap(buf, &mut i.out);
        } else {
            buf.extend_from_slice(&i.out);
            i.out.clear();
        }
        true
    }

    /// Gives memory back when the client is idle: an output buffer that a large reply grew
    /// (a small one is kept, so that small requests allocate nothing), and a slot queue that a
    /// burst of pipelined requests made large.
    pub fn shrink(&self) {
        let mut i = self.inner.borrow_mut();
        if i.out.is_empty() && i.out.capacity() > super::session::SMALL_BUFFER {
            i.out = Vec::new();
        }
        if i.slots.is_empty() && i.slots.capacity() > 16 {
            i.slots = VecDeque::new();
        }
    }

    /// The client is parked with nothing owed: its buffers go, small ones too.
    pub fn shrink_all(&self) {
        let mut i = self.inner.borrow_mut();
        if i.out.is_empty() {
            i.out = Vec::new();
        }
        if i.slots.is_empty() {
            i.slots = VecDeque::new();
        }
    }

    /// The client went away: drop what is owed and whatever arrives later.
    pub fn close(&self) {
        let mut i = self.inner.borrow_mut();
        i.gone = true;
        i.slots.clear();
        i.out = Vec::new();
    }
}

impl<M: Merge> crate::worker::Wake for Replies<M> {
    fn wake(&self) {
        self.ready.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concatenates parts in part order.
    #[derive(Debug, Default)]
    struct Cat(Vec<(u32, Vec<u8>)>);
    impl Merge for Cat {
        fn part(&mut self, part: u32, reply: &[u8]) {
            self.0.push((part, reply.to_vec()));
        }
        fn finish(&mut self, out: &mut Vec<u8>) {
            self.0.sort();
            for (_, r) in &self.0 {
                out.extend_from_slice(r);
            }
        }
    }

    fn output(r: &Replies<Cat>) -> String {
        let mut v = Vec::new();
        r.take_output(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn replies_leave_in_request_order() {
        let r = Replies::<Cat>::default();
        let a = r.open(false);
        let b = r.open(false);
        let s = r.open_split(2, Cat::default());
        let silent = r.open(true);
        r.local(|o| o.extend_from_slice(b"L"));
        r.deliver(b, b"B");
        assert_eq!(output(&r), "");
        r.deliver(Tag { seq: s, part: 1 }, b"S1");
        r.deliver(a, b"A");
        assert_eq!(output(&r), "AB");
        r.deliver(silent, b"dropped");
        r.deliver(Tag { seq: s, part: 0 }, b"S0");
        assert_eq!(output(&r), "S0S1L");
        assert_eq!(r.in_flight(), 0);
        r.local(|o| o.extend_from_slice(b"now"));
        assert_eq!(output(&r), "now");
        // Late or unknown deliveries are ignored.
        r.deliver(a, b"again");
        r.deliver(Tag { seq: 99, part: 0 }, b"x");
        assert_eq!(output(&r), "");
    }

    #[test]
    fn an_idle_client_gives_back_what_a_burst_grew() {
        let r = Replies::<Cat>::default();
        let tags: Vec<Tag> = (0..1000).map(|_| r.open(false)).collect();
        for t in tags {
            r.deliver(t, b"x");
        }
        assert_eq!(output(&r).len(), 1000);
        r.shrink();
        let i = r.inner.borrow();
        assert_eq!(
            (i.slots.capacity(), i.out.capacity()),
            (0, 0),
            "1000 bytes of replies"
        );
    }

    #[test]
    fn a_closed_client_gets_nothing() {
        let r = Replies::<Cat>::default();
        let a = r.open(false);
        r.close();
        r.deliver(a, b"A");
        assert_eq!(output(&r), "");
    }
}
