//! Where a `Transfer-Encoding: chunked` body ends (RFC 9112 7.1), for relaying one verbatim:
//! [`Chunked::feed`] is given the bytes as they arrive and says how many of them belong to the
//! body and whether its last chunk and trailer section have been seen.
//!
//! It checks the framing (hex sizes, CRLF after each line and each chunk's data, bounded
//! extensions and trailers) but keeps nothing: chunk data, extensions and trailers pass
//! through untouched. Written by hand because the fast path relays bytes rather than frames;
//! hyper's decoder (used by the rest of the engine) hands out decoded data only.
//!
//! [`Chunked::next`] also says where each run of chunk data is, for a decoder
//! (`super::bridge`, which hands data to hyper as frames).
//!
//! Not here: anything about requests (a chunked request body goes to the hyper path).

/// Longest chunk-extension, and longest trailer section, accepted.
const MAX_EXT: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size's hex digits (`digits` so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: whitespace or `;ext`, up to the CR.
    Ext {
        size: u64,
        len: u32,
    },
    /// CR seen after the size line; LF next.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart {
        len: u32,
    },
    Trailer {
        len: u32,
    },
    TrailerLf {
        len: u32,
    },
    FinalLf,
    Done,
}

/// The framing of one chunked body, fed in pieces.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

/// The framing is broken: the body cannot be relayed and the connection cannot be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

impl Chunked {
    /// Takes the next bytes of the body: how many of `buf` belong to it (all of them unless
    /// it ended inside `buf`).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Broken> {
        let mut i = 0;
        loop {
            let (n, _) = self.next(&buf[i..])?;
            i += n;
            if i == buf.len() || self.done() {
                return Ok(i);
            }
        }
    }

    /// Decodes what `buf` holds of the body, up to its end: appends the chunk data to `data`
    /// and the trailer section's bytes (its final CRLF included) to `trailers`; how many bytes
    /// of `buf` it took.
    pub fn decode(
        &mut self,
        buf: &[u8],
        data: &mut Vec<u8>,
        trailers: &mut Vec<u8>,
    ) -> Result<usize, Broken> {
        let mut at = 0;
        // Each step takes at least one byte until the body is done.
        while at < buf.len() && !self.done() {
            let was_trailers = self.in_trailers();
            let (n, run) = self.next(&buf[at..])?;
            if let Some(r) = run {
                data.extend_from_slice(&buf[at + r.start..at + r.end]);
            } else if was_trailers {
                trailers.extend_from_slice(&buf[at..at + n]);
            }
            at += n;
        }
        Ok(at)
    }

    /// Inside the trailer section (after the last chunk's size line, up to the final CRLF).
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart { .. }
                | State::Trailer { .. }
                | State::TrailerLf { .. }
                | State::FinalLf
        )
    }

    /// Takes the bytes of `buf` up to the end of the next run of chunk data: how many it took,
    /// and where that run is in `buf` (`None` when `buf` or the body ended first, or the
    /// trailer section starts: it stops there, so that a decoder knows where the trailers
    /// begin). What a decoder hands on; the rest is framing.
    pub fn next(&mut self, buf: &[u8]) -> Result<(usize, Option<std::ops::Range<usize>>), Broken> {
        let mut i = 0;
        while i < buf.len() {
            if let State::Data { left } = self.state {
                let n = left.min((buf.len() - i) as u64);
                let start = i;
                i += n as usize;
                self.state = if left == n {
                    State::DataCr
                } else {
                    State::Data { left: left - n }
                };
                return Ok((i, Some(start..i)));
            }
            let b = buf[i];
            i += 1;
            self.state = match self.state {
                State::Size { size, digits } => match hex(b) {
                    Some(d) if digits < 16 => State::Size {
                        size: size << 4 | u64::from(d),
                        digits: digits + 1,
                    },
                    Some(_) => return Err(Broken),
                    None if digits == 0 => return Err(Broken),
                    None => match b {
                        b'\r' => State::SizeLf { size },
                        b';' | b' ' | b'\t' => State::Ext { size, len: 1 },
                        _ => return Err(Broken),
                    },
                },
                State::Ext { size, len } => match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(Broken),
                    _ if len >= MAX_EXT => return Err(Broken),
                    _ => State::Ext { size, len: len + 1 },
                },
                State::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => {
                        self.state = State::TrailerStart { len: 0 };
                        return Ok((i, None));
                    }
                    (b'\n', left) => State::Data { left },
                    _ => return Err(Broken),
                },
                State::Data { .. } => unreachable!("handled above"),
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { size: 0, digits: 0 },
                State::TrailerStart { len } => match b {
                    b'\r' => State::FinalLf,
                    b'\n' => return Err(Broken),
                    _ if len >= MAX_EXT => return Err(Broken),
                    _ => State::Trailer { len: len + 1 },
                },
                State::Trailer { len } => match b {
                    b'\r' => State::TrailerLf { len },
                    b'\n' => return Err(Broken),
                    _ if len >= MAX_EXT => return Err(Broken),
                    _ => State::Trailer { len: len + 1 },
                },
                State::TrailerLf { len } if b == b'\n' => State::TrailerStart { len },
                State::FinalLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok((i, None));
                }
                State::Done => {
                    i -= 1;
                    return Ok((i, None));
                }
                _ => return Err(Broken),
            };
        }
        Ok((i, None))
    }

    /// The last chunk and the trailer section have been fed.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` whole; then every split into two pieces must agree.
    fn check(body: &[u8]) -> Result<(usize, bool), Broken> {
        let mut whole = Chunked::default();
        let r = whole.feed(body).map(|n| (n, whole.done()));
        for cut in 0..=body.len() {
            let mut c = Chunked::default();
            let split = c.feed(&body[..cut]).and_then(|a| {
                if c.done() {
                    return Ok((a, true));
                }
                c.feed(&body[cut..]).map(|b| (a + b, c.done()))
            });
            match (&r, &split) {
                (Err(_), Err(_)) => {}
                _ => assert_eq!(
                    r,
                    split,
                    "cut at {cut} of {:?}",
                    String::from_utf8_lossy(body)
                ),
            }
        }
        r
    }

    #[test]
    fn golden_bodies_end_where_the_last_chunk_and_trailers_end() {
        let simple = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(check(simple), Ok((simple.len(), true)));
        let with_ext = b"5;name=v\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        assert_eq!(check(with_ext), Ok((with_ext.len(), true)));
        let trailers = b"3\r\nabc\r\n0\r\nx-sum: 1\r\nx-b: 2\r\n\r\n";
        assert_eq!(check(trailers), Ok((trailers.len(), true)));
        // The next message's bytes are not the body's.
        let mut two = simple.to_vec();
        two.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(check(&two), Ok((simple.len(), true)));
    }

    #[test]
    fn every_prefix_is_incomplete_not_broken() {
        let body = b"a\r\n0123456789\r\n2;x\r\nab\r\n0\r\nt: v\r\n\r\n";
        for end in 0..body.len() {
            let mut c = Chunked::default();
            assert_eq!(c.feed(&body[..end]), Ok(end), "prefix {end}");
            assert!(!c.done(), "prefix {end} is not the whole body");
        }
    }

    #[test]
    fn broken_framing_is_refused() {
        for bad in [
            &b"\r\n"[..],             // no size
            b"g\r\n",                 // not hex
            b"5\nhello\r\n",          // bare LF after the size
            b"5\r\nhelloX\r\n",       // data longer than its size
            b"5\r\nhello\n0\r\n\r\n", // bare LF after data
            b"11111111111111111\r\n", // 17 hex digits: past u64
            b"0\r\nx: y\n\r\n",       // bare LF in a trailer
            b"-1\r\n",                // sign
            b"0x5\r\n",               // prefix
        ] {
            assert_eq!(
                check(bad),
                Err(Broken),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = [b"1;".as_slice(), &[b'e'; MAX_EXT as usize + 1]].concat();
        assert_eq!(check(&long_ext), Err(Broken));
    }

    #[test]
    fn large_sizes_are_counted_not_buffered() {
        let mut c = Chunked::default();
        assert_eq!(c.feed(b"ffffffff\r\n"), Ok(10));
        let data = vec![0u8; 1 << 16];
        let mut left: u64 = 0xffff_ffff;
        while left > data.len() as u64 {
            assert_eq!(c.feed(&data), Ok(data.len()));
            left -= data.len() as u64;
        }
        assert_eq!(c.feed(&data[..left as usize]), Ok(left as usize));
        assert_eq!(c.feed(b"\r\n0\r\n\r\n"), Ok(7));
        assert!(c.done());
    }

    type Decoded = (Vec<u8>, Vec<u8>, usize);

    /// Decodes `body` fed in the given pieces: the data runs [`Chunked::next`] points at, the
    /// trailer section's bytes, and where the body ended.
    fn decode(pieces: &[&[u8]]) -> Result<Decoded, Broken> {
        let mut c = Chunked::default();
        let (mut data, mut trailers, mut used) = (Vec::new(), Vec::new(), 0);
        for piece in pieces {
            used += c.decode(piece, &mut data, &mut trailers)?;
        }
        Ok((data, trailers, used))
    }

    #[test]
    fn next_finds_the_data_runs_and_the_trailers_at_every_split() {
        let body: &[u8] =
            b"5;ext=1\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\nt: x\r\n\r\nNEXT";
        let whole = decode(&[body]).unwrap();
        assert_eq!(
            whole,
            (
                b"hello world0123456789".to_vec(),
                b"t: x\r\n\r\n".to_vec(),
                body.len() - 4
            )
        );
        for cut in 0..=body.len() {
            for cut2 in cut..=body.len() {
                let got = decode(&[&body[..cut], &body[cut..cut2], &body[cut2..]]);
                assert_eq!(got.as_ref(), Ok(&whole), "cuts at {cut}, {cut2}");
            }
        }
        assert_eq!(
            decode(&[b"0\r\n\r\n"]),
            Ok((Vec::new(), b"\r\n".to_vec(), 5))
        );
        // Broken framing is broken whatever the split.
        assert_eq!(decode(&[b"5\r\nhelloX\r\n"]), Err(Broken));
    }
}
