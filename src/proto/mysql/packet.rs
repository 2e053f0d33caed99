//! MySQL packet framing, sans-IO: a packet is a 3-byte little-endian payload length, a 1-byte
//! sequence id, then the payload. A payload of 16 MiB - 1 bytes or more continues in the next
//! packet (each full one carries exactly `0xFFFFFF` bytes; a shorter one, possibly empty, ends
//! it). [`frame`] finds the first complete logical packet in a buffer without copying;
//! [`payload`] gives its bytes (borrowed unless it spanned several packets); [`write`] frames a
//! payload for sending.
//!
//! Bounded: a logical packet larger than the caller's limit (the server's
//! `max_allowed_packet`) is an error as soon as its headers say so, before it is buffered.
//!
//! Not here: what payloads mean (`super::wire`).

use std::borrow::Cow;

/// The largest payload one physical packet carries.
pub const MAX_CHUNK: usize = 0xFF_FFFF;
/// Bytes of header in front of each physical packet.
pub const HEADER: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The logical packet is longer than the limit.
    TooLarge { len: usize, max: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { len, max } => {
                write!(f, "packet of {len} bytes or more is larger than {max}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Where a complete logical packet lies at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Sequence id of its last physical packet (the next packet of the exchange follows it).
    pub last_seq: u8,
    /// Total payload length.
    pub len: usize,
    /// Physical packets it spans.
    pub parts: usize,
    /// Bytes of `buf` it takes, headers included.
    pub consumed: usize,
}

/// The first complete logical packet of `buf`, `None` if more bytes are needed.
pub fn frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
    let mut at = 0;
    let mut len = 0usize;
    let mut parts = 0;
    let mut seq = 0;
    loop {
        let Some(h) = buf.get(at..at + HEADER) else {
            return Ok(None);
        };
        let chunk = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        if parts == 0 {
            seq = h[3];
        }
        len = len.saturating_add(chunk);
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        parts += 1;
        let end = at + HEADER + chunk;
        if buf.len() < end {
            return Ok(None);
        }
        if chunk < MAX_CHUNK {
            return Ok(Some(Frame {
                seq,
                last_seq: h[3],
                len,
                parts,
                consumed: end,
            }));
        }
        at = end;
    }
}

/// The payload of `f`, which [`frame`] found at the front of `buf`.
pub fn payload<'a>(buf: &'a [u8], f: &Frame) -> Cow<'a, [u8]> {
    if f.parts == 1 {
        return Cow::Borrowed(&buf[HEADER..f.consumed]);
    }
    let mut out = Vec::with_capacity(f.len);
    let mut at = 0;
    while at < f.consumed {
        let chunk =
            usize::from(buf[at]) | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]) << 16;
        out.extend_from_slice(&buf[at + HEADER..at + HEADER + chunk]);
        at += HEADER + chunk;
    }
    Cow::Owned(out)
}

/// Appends `payload` to `out` as packets numbered from `seq`; returns the next sequence id.
pub fn write(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_ok_packet_frame() {
        // An OK packet from the protocol documentation: payload 7 bytes, sequence 2.
        let buf = [
            0x07, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0xAA,
        ];
        let f = frame(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (f.seq, f.last_seq, f.len, f.parts, f.consumed),
            (2, 2, 7, 1, 11)
        );
        assert_eq!(&*payload(&buf, &f), &[0, 0, 0, 2, 0, 0, 0]);
    }

    #[test]
    fn every_prefix_is_incomplete_never_an_error() {
        let mut buf = Vec::new();
        write(&mut buf, 0, b"\x03SELECT 1");
        for n in 0..buf.len() {
            assert_eq!(frame(&buf[..n], 1 << 20), Ok(None), "prefix {n}");
        }
        assert!(frame(&buf, 1 << 20).unwrap().is_some());
    }

    #[test]
    fn large_payloads_span_packets_and_come_back_whole() {
        for len in [0, 1, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK + 1, 2 * MAX_CHUNK] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut buf = Vec::new();
            let next = write(&mut buf, 7, &data);
            let parts = len / MAX_CHUNK + 1;
            assert_eq!(next, 7 + parts as u8, "len {len}");
            let f = frame(&buf, 64 << 20).unwrap().unwrap();
            assert_eq!(
                (f.len, f.parts, f.consumed, f.seq),
                (len, parts, buf.len(), 7)
            );
            assert_eq!(f.last_seq, 7 + parts as u8 - 1);
            assert!(payload(&buf, &f) == data.as_slice());
            // Every cut inside the headers or payloads is incomplete.
            for cut in [1, HEADER, buf.len() / 2, buf.len() - 1] {
                if cut < buf.len() {
                    assert_eq!(frame(&buf[..cut], 64 << 20), Ok(None));
                }
            }
        }
    }

    #[test]
    fn too_large_is_refused_from_the_header_alone() {
        let buf = [0xFF, 0xFF, 0x00, 0x00];
        assert_eq!(
            frame(&buf, 1024),
            Err(FrameError::TooLarge {
                len: 0xFFFF,
                max: 1024
            })
        );
    }
}
