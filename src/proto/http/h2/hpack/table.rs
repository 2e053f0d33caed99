//! HPACK's two tables (RFC 7541 2.3): the static table of Appendix A, and a decoder's dynamic
//! table, a FIFO of the fields the peer chose to index, bounded in octets.
//!
//! Not here: the representations that refer to them (`super::decode`, `super::encode`).

use std::collections::VecDeque;

/// Appendix A: index 1 to 61 (this array is 0-based).
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// What an entry costs beyond its name and value (RFC 7541 4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// A decoder's dynamic table: newest entry first. Each entry is one allocation holding its
/// name then its value.
#[derive(Debug, Default)]
pub struct Dynamic {
    entries: VecDeque<(Box<[u8]>, usize)>,
    /// Sum of the entries' sizes.
    size: usize,
    /// The size the peer set (a size update), at most what we announced.
    max: usize,
}

impl Dynamic {
    pub fn new(max: usize) -> Self {
        Dynamic {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    /// The entry at dynamic index `i` (0 is the newest): name and value.
    pub fn get(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.entries.get(i).map(|(b, n)| b.split_at(*n))
    }

    /// Adds `name` + `value` (already joined in `entry`, the name `name_len` long), evicting
    /// the oldest entries to make room; an entry larger than the table empties it and is not
    /// added (RFC 7541 4.4).
    pub fn insert(&mut self, entry: Box<[u8]>, name_len: usize) {
        let size = entry.len() + ENTRY_OVERHEAD;
        self.evict_to(self.max.saturating_sub(size));
        if size <= self.max {
            self.size += size;
            self.entries.push_front((entry, name_len));
        }
    }

    /// A size update (RFC 7541 6.3): the caller checked it against the announced limit.
    pub fn resize(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some((b, _)) => self.size -= b.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    /// Octets held: the entries as RFC 7541 counts them.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Gives back spare capacity (for a connection about to wait idle).
    pub fn shrink(&mut self) {
        self.entries.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str) -> (Box<[u8]>, usize) {
        let joined: Vec<u8> = [name.as_bytes(), value.as_bytes()].concat();
        (joined.into_boxed_slice(), name.len())
    }

    #[test]
    fn evicts_oldest_first_and_counts_overhead() {
        let mut t = Dynamic::new(100);
        let (e, n) = entry("aaaa", "bbbb"); // 40
        t.insert(e, n);
        let (e, n) = entry("cccc", "dddd"); // 40
        t.insert(e, n);
        assert_eq!(t.size(), 80);
        let (e, n) = entry("eeee", "ffff"); // 40: the oldest goes
        t.insert(e, n);
        assert_eq!((t.len(), t.size()), (2, 80));
        assert_eq!(t.get(0), Some((&b"eeee"[..], &b"ffff"[..])));
        assert_eq!(t.get(1), Some((&b"cccc"[..], &b"dddd"[..])));
        assert_eq!(t.get(2), None);
        // Larger than the table: it empties the table.
        let (e, n) = entry(&"x".repeat(80), "y");
        t.insert(e, n);
        assert_eq!((t.len(), t.size()), (0, 0));
        let (e, n) = entry("aaaa", "bbbb");
        t.insert(e, n);
        t.resize(0);
        assert_eq!((t.len(), t.size()), (0, 0));
    }
}
