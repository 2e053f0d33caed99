//! HTTP/2 framing (RFC 9113 4 and 6): the 9-byte frame header, the payload layouts the
//! server reads (padding, priority fields, settings, window updates, resets, pings, goaways)
//! and the frames it writes. Pure functions over byte slices; no state.
//!
//! Not here: what a frame means for a connection or a stream (`super::conn`).

/// What a client sends first (RFC 9113 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The frame header's length.
pub const HEADER_LEN: usize = 9;

/// `SETTINGS_MAX_FRAME_SIZE`'s initial value, the largest frame either side starts with.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;

/// The largest a flow-control window may be (RFC 9113 6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// Frame types (RFC 9113 6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Settings identifiers (RFC 9113 6.5.2).
pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    /// RFC 8441: the server takes extended CONNECT (`:protocol`; WebSocket over HTTP/2).
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// An error code (RFC 9113 7). Any value may arrive; the named ones are those corelane sends
/// or looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
}

/// The names of RFC 9113's error codes, by code.
pub const REASON_NAMES: [&str; 14] = [
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
];

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match REASON_NAMES.get(self.0 as usize) {
            Some(name) => f.write_str(name),
            None => write!(f, "error code {:#x}", self.0),
        }
    }
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    /// The stream identifier, its reserved bit cleared.
    pub stream: u32,
}

impl Head {
    /// The header at the start of `buf`, if all 9 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Head> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Head {
            len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A payload that breaks its frame type's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Padding as long as the payload or longer: PROTOCOL_ERROR.
    Padding,
    /// A fixed-size payload of the wrong size: FRAME_SIZE_ERROR.
    Size,
}

/// The payload of a DATA or HEADERS frame without its padding (RFC 9113 6.1, 6.2), and the
/// number of octets padding took (the pad length field included).
pub fn unpad<'a>(head: &Head, payload: &'a [u8]) -> Result<(&'a [u8], usize), Layout> {
    if !head.has(flag::PADDED) {
        return Ok((payload, 0));
    }
    let (&pad, rest) = payload.split_first().ok_or(Layout::Padding)?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(Layout::Padding)?;
    Ok((&rest[..keep], 1 + usize::from(pad)))
}

/// A HEADERS payload (unpadded) split into the stream it depends on, if it carries priority
/// fields, and its header block fragment.
pub fn headers_block<'a>(
    head: &Head,
    payload: &'a [u8],
) -> Result<(Option<u32>, &'a [u8]), Layout> {
    if !head.has(flag::PRIORITY) {
        return Ok((None, payload));
    }
    if payload.len() < 5 {
        return Err(Layout::Size);
    }
    let dep = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
    Ok((Some(dep), &payload[5..]))
}

/// A 4-byte payload as a number (RST_STREAM's error code; WINDOW_UPDATE's, reserved bit
/// included).
pub fn word(payload: &[u8]) -> Result<u32, Layout> {
    let w: [u8; 4] = payload.try_into().map_err(|_| Layout::Size)?;
    Ok(u32::from_be_bytes(w))
}

/// A SETTINGS payload's (identifier, value) pairs.
pub fn settings(payload: &[u8]) -> Result<impl Iterator<Item = (u16, u32)> + '_, Layout> {
    if payload.len() % 6 != 0 {
        return Err(Layout::Size);
    }
    Ok(payload.chunks_exact(6).map(|s| {
        (
            u16::from_be_bytes([s[0], s[1]]),
            u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
        )
    }))
}

/// Appends a frame header.
pub fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub fn write_settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    write_head(out, values.len() * 6, kind::SETTINGS, 0, 0);
    for (id, v) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write_head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn write_rst(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    write_head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn write_ping_ack(out: &mut Vec<u8>, data: &[u8]) {
    write_head(out, data.len(), kind::PING, flag::ACK, 0);
    out.extend_from_slice(data);
}

/// A GOAWAY, its debug data cut to 256 bytes.
pub fn write_goaway(out: &mut Vec<u8>, last: u32, reason: Reason, debug: &[u8]) {
    let debug = &debug[..debug.len().min(256)];
    write_head(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_write_back() {
        let mut out = Vec::new();
        write_head(&mut out, 0x01_02_03, kind::HEADERS, 0x25, 7);
        assert_eq!(out, [1, 2, 3, 1, 0x25, 0, 0, 0, 7]);
        let h = Head::parse(&out).unwrap();
        assert_eq!(
            h,
            Head {
                len: 0x01_02_03,
                kind: kind::HEADERS,
                flags: 0x25,
                stream: 7
            }
        );
        assert!(h.has(flag::END_HEADERS) && h.has(flag::PRIORITY) && !h.has(flag::PADDED));
        // The reserved bit is ignored; every prefix of a header is not one yet.
        assert_eq!(
            Head::parse(&[0, 0, 0, 0, 0, 0x80, 0, 0, 1]).unwrap().stream,
            1
        );
        for end in 0..HEADER_LEN {
            assert_eq!(Head::parse(&out[..end]), None);
        }
    }

    #[test]
    fn padding_and_priority() {
        let padded = Head {
            len: 0,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(unpad(&padded, &[2, b'a', b'b', 0, 0]), Ok((&b"ab"[..], 3)));
        assert_eq!(unpad(&padded, &[0]), Ok((&b""[..], 1)));
        assert_eq!(unpad(&padded, &[4, 0, 0, 0]), Err(Layout::Padding));
        assert_eq!(unpad(&padded, &[]), Err(Layout::Padding));
        let plain = Head { flags: 0, ..padded };
        assert_eq!(unpad(&plain, b"xy"), Ok((&b"xy"[..], 0)));
        let prio = Head {
            flags: flag::PRIORITY,
            ..padded
        };
        assert_eq!(
            headers_block(&prio, &[0x80, 0, 0, 3, 16, 0x82]),
            Ok((Some(3), &[0x82][..]))
        );
        assert_eq!(headers_block(&prio, &[0, 0, 0, 3]), Err(Layout::Size));
    }

    #[test]
    fn settings_pairs() {
        let mut out = Vec::new();
        write_settings(
            &mut out,
            &[(setting::INITIAL_WINDOW_SIZE, 65_535), (0x99, 1)],
        );
        let h = Head::parse(&out).unwrap();
        assert_eq!((h.len, h.kind, h.stream), (12, kind::SETTINGS, 0));
        let got: Vec<_> = settings(&out[HEADER_LEN..]).unwrap().collect();
        assert_eq!(got, [(setting::INITIAL_WINDOW_SIZE, 65_535), (0x99, 1)]);
        assert!(settings(&out[HEADER_LEN..HEADER_LEN + 5]).is_err());
        assert_eq!(word(&[0, 0, 1, 0]), Ok(256));
        assert_eq!(word(&[0, 0, 1]), Err(Layout::Size));
    }
}
