//! One HTTP/2 server connection as a state machine, without I/O (sans-IO): bytes from the
//! client go in ([`Connection::recv`]), requests, body data, trailers and resets come out
//! through [`Events`], and everything corelane sends (responses, window updates, acks,
//! resets, GOAWAY) is appended to one output buffer the driver writes.
//!
//! What it keeps for the connection: the client's preface and settings, the HPACK decoder
//! (`super::hpack`), both directions' flow-control windows (RFC 9113 5.2 and 6.9) and the
//! open streams, each with its state (RFC 9113 5.1: open, or half-closed either way), its two
//! windows and the body length it announced. Every rule of RFC 9113 that a server must check
//! is checked here, as a connection error (GOAWAY, then the connection closes) or a stream
//! error (RST_STREAM), with the code the RFC names. Beyond the RFC, against known attacks:
//! - at most `max_streams` streams open (more are refused, REFUSED_STREAM);
//! - a header block, CONTINUATION frames included, of at most `max_block` octets
//!   (ENHANCE_YOUR_CALM past it: the CONTINUATION flood of CVE-2024-27316);
//! - decoded header lists counted against `max_header_list` without keeping the excess (the
//!   HPACK bomb);
//! - streams reset by the client before their response ended draw on a budget that finished
//!   responses refill (ENHANCE_YOUR_CALM when it runs out: the rapid reset of CVE-2023-44487);
//! - the driver stops reading while the output it has not written passes a bound, so floods
//!   of PING or SETTINGS from a client that does not read cannot grow it without end.
//!
//! Server push is never used (`SETTINGS_ENABLE_PUSH` is announced as 0); priorities are
//! parsed for their errors and otherwise ignored, as RFC 9113 allows.
//!
//! Not here: sockets, tasks and timers (`super::serve`), HTTP semantics (routing and
//! forwarding are `super::super::handle`'s).

use super::fields::Fields;
use super::frame::{self, Head, Layout, MAX_WINDOW, Reason, flag, kind, setting};
use super::hpack::{self, Decoder};

/// `SETTINGS_HEADER_TABLE_SIZE`: the HPACK table the client may use (RFC 9113's default).
pub const HEADER_TABLE_SIZE: usize = 4096;

/// What a connection allows, announced in its first SETTINGS.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_streams: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE`: what a client may send on a stream before corelane
    /// has passed it on.
    pub stream_window: u32,
    /// The connection's window, for all streams together.
    pub conn_window: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`: a request's header list, as RFC 9113 counts it.
    pub max_header_list: usize,
    /// The largest header block, HEADERS and CONTINUATION frames together.
    pub max_block: usize,
}

/// A connection error: corelane says GOAWAY with `reason`, then closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnError {
    pub reason: Reason,
    pub why: &'static str,
}

fn fail(reason: Reason, why: &'static str) -> ConnError {
    ConnError { reason, why }
}

/// What the client asks of the driver.
pub trait Events {
    /// A new request on `stream`; `end`: it has no body. A list over the size limit comes
    /// too ([`Fields::too_large`]), to be answered 431.
    fn request(&mut self, stream: u32, fields: &Fields, end: bool);
    /// Body bytes; the driver gives them back to the windows with [`Connection::release`]
    /// once they are passed on.
    fn data(&mut self, stream: u32, data: &[u8], end: bool);
    /// The request's trailers, which end it.
    fn trailers(&mut self, stream: u32, fields: &Fields);
    /// The stream is gone: the client reset it, or corelane did for a stream error.
    fn reset(&mut self, stream: u32, reason: Reason);
    /// A new request was reset with `PROTOCOL_ERROR` as malformed (RFC 9113 8.1.1), before
    /// any [`Events::request`] for it: `fields` is what it said.
    fn malformed(&mut self, stream: u32, fields: &Fields);
}

#[derive(Debug)]
struct Stream {
    id: u32,
    /// The client may still send (no END_STREAM yet).
    recv_open: bool,
    /// corelane may still send. A response's end closes a stream whole, except a tunnel's
    /// (`half_close`), which stays half-closed (local) until the client ends its side too.
    send_open: bool,
    half_close: bool,
    send_window: i64,
    recv_window: i64,
    /// Bytes passed on since the last WINDOW_UPDATE for this stream.
    recv_unacked: u32,
    /// The client's `content-length`, and the body bytes received so far.
    expect_len: Option<u64>,
    received: u64,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct Pending {
    stream: u32,
    end_stream: bool,
    self_dependent: bool,
    block: Vec<u8>,
}

/// How many streams a client may have reset before their response ended, by RST_STREAM or by
/// a stream error it provoked, beyond those that finished responses earned back.
const RESET_BUDGET: i32 = 200;

/// How many of the streams corelane reset (or ignored after its GOAWAY) it remembers, so that
/// frames the client had already sent on them are ignored rather than taken for errors.
const RECENT_RESETS: usize = 256;

#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    /// Octets of the client preface seen so far.
    preface: usize,
    settings_seen: bool,
    decoder: Decoder,
    /// Working space: Huffman strings while decoding, a block while encoding.
    scratch: Vec<u8>,
    /// The header list being decoded (boxed: working memory, dropped while parked).
    fields: Option<Box<Fields>>,
    /// The client's `SETTINGS_INITIAL_WINDOW_SIZE` and `SETTINGS_MAX_FRAME_SIZE`.
    peer_window: u32,
    peer_max_frame: usize,
    /// The connection's send window, and the client's receive window as corelane sees it.
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    /// Open streams, by id (ascending: ids only grow).
    streams: Vec<Stream>,
    /// The highest stream the client opened (or tried to).
    last_id: u32,
    pending: Option<Box<Pending>>,
    /// GOAWAY sent, with its code and last stream: streams above it are not served.
    goaway: Option<(Reason, u32)>,
    /// The first header block sent has told the client's decoder that corelane's table is
    /// empty (a size update to 0): whatever `SETTINGS_HEADER_TABLE_SIZE` the client sets, its
    /// decoder then expects no further update (RFC 7541 4.2).
    table_zeroed: bool,
    /// Streams corelane reset, newest last (at most [`RECENT_RESETS`], in a ring).
    recent_resets: Vec<u32>,
    recent_at: usize,
    /// The client said GOAWAY: it opens no more streams.
    peer_goaway: bool,
    reset_budget: i32,
    /// A window grew since the driver last asked: blocked streams may send.
    window_opened: bool,
    out: Vec<u8>,
    written: usize,
    /// RST_STREAM frames received, and sent with an error (not NO_ERROR), since the driver
    /// last took them ([`Connection::take_resets`]) for the listener's counters.
    resets: (u32, u32),
}

impl Connection {
    /// A connection whose first bytes out are corelane's SETTINGS (and a window update for
    /// the connection window beyond the initial 65,535).
    pub fn new(limits: Limits) -> Self {
        // Windows from RFC 9113's initial 65,535 (a client may send that much before it has
        // our SETTINGS) to the largest a window may be.
        let window = |w: u32| w.clamp(65_535, MAX_WINDOW as u32);
        let limits = Limits {
            stream_window: window(limits.stream_window),
            conn_window: window(limits.conn_window),
            ..limits
        };
        let mut c = Connection {
            limits,
            preface: 0,
            settings_seen: false,
            decoder: Decoder::new(HEADER_TABLE_SIZE),
            scratch: Vec::new(),
            fields: None,
            peer_window: 65_535,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            send_window: 65_535,
            recv_window: i64::from(limits.conn_window),
            recv_unacked: 0,
            streams: Vec::new(),
            last_id: 0,
            pending: None,
            goaway: None,
            table_zeroed: false,
            recent_resets: Vec::new(),
            recent_at: 0,
            peer_goaway: false,
            reset_budget: RESET_BUDGET,
            window_opened: false,
            out: Vec::new(),
            written: 0,
            resets: (0, 0),
        };
        frame::write_settings(
            &mut c.out,
            &[
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_CONCURRENT_STREAMS, limits.max_streams),
                (setting::INITIAL_WINDOW_SIZE, limits.stream_window),
                (
                    setting::MAX_HEADER_LIST_SIZE,
                    u32::try_from(limits.max_header_list).unwrap_or(u32::MAX),
                ),
                (setting::ENABLE_CONNECT_PROTOCOL, 1),
            ],
        );
        if limits.conn_window > 65_535 {
            frame::write_window_update(&mut c.out, 0, limits.conn_window - 65_535);
        }
        c
    }

    /// Reads the frames at the start of `input`, telling `ev` what they ask; how many bytes
    /// were used (a frame not all there yet is left for the next call).
    pub fn recv(&mut self, input: &[u8], ev: &mut impl Events) -> Result<usize, ConnError> {
        let mut pos = 0;
        if self.preface < frame::PREFACE.len() {
            let n = (frame::PREFACE.len() - self.preface).min(input.len());
            if input[..n] != frame::PREFACE[self.preface..self.preface + n] {
                return Err(fail(Reason::PROTOCOL_ERROR, "no HTTP/2 connection preface"));
            }
            self.preface += n;
            pos = n;
        }
        while let Some(head) = Head::parse(&input[pos..]) {
            if head.len > frame::DEFAULT_MAX_FRAME as usize {
                return Err(fail(Reason::FRAME_SIZE_ERROR, "frame larger than allowed"));
            }
            let end = pos + frame::HEADER_LEN + head.len;
            if end > input.len() {
                break;
            }
            self.frame(head, &input[pos + frame::HEADER_LEN..end], ev)?;
            pos = end;
        }
        Ok(pos)
    }

    fn frame(&mut self, h: Head, p: &[u8], ev: &mut impl Events) -> Result<(), ConnError> {
        if !self.settings_seen {
            if h.kind != kind::SETTINGS || h.has(flag::ACK) {
                return Err(fail(Reason::PROTOCOL_ERROR, "first frame not SETTINGS"));
            }
            self.settings_seen = true;
        }
        if let Some(pending) = &self.pending {
            if h.kind != kind::CONTINUATION || h.stream != pending.stream {
                return Err(fail(Reason::PROTOCOL_ERROR, "header block interrupted"));
            }
        }
        match h.kind {
            kind::DATA => self.on_data(h, p, ev),
            kind::HEADERS => self.on_headers(h, p, ev),
            kind::PRIORITY => self.on_priority(h, p, ev),
            kind::RST_STREAM => self.on_rst(h, p, ev),
            kind::SETTINGS => self.on_settings(h, p),
            kind::PUSH_PROMISE => Err(fail(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client")),
            kind::PING => self.on_ping(h, p),
            kind::GOAWAY => {
                need_stream0(&h)?;
                if p.len() < 8 {
                    return Err(fail(Reason::FRAME_SIZE_ERROR, "short GOAWAY"));
                }
                self.peer_goaway = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.on_window_update(h, p, ev),
            kind::CONTINUATION => self.on_continuation(h, p, ev),
            // Unknown frame types are ignored (RFC 9113 4.1).
            _ => Ok(()),
        }
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.binary_search_by_key(&id, |s| s.id).ok()
    }

    fn on_data(&mut self, h: Head, p: &[u8], ev: &mut impl Events) -> Result<(), ConnError> {
        need_stream(&h)?;
        let len = h.len as i64;
        if len > self.recv_window {
            return Err(fail(
                Reason::FLOW_CONTROL_ERROR,
                "connection window exceeded",
            ));
        }
        self.recv_window -= len;
        let (data, padding) = frame::unpad(&h, p)
            .map_err(|_| fail(Reason::PROTOCOL_ERROR, "padding longer than its frame"))?;
        let Some(i) = self.find(h.stream) else {
            self.idle_check(h.stream, "DATA on an idle stream")?;
            // A closed stream: counted for the connection, then dropped; an error unless
            // corelane reset it (the client may have sent this before it knew).
            self.release_conn(h.len);
            if !self.recently_reset(h.stream) {
                self.rst(h.stream, Reason::STREAM_CLOSED);
            }
            return Ok(());
        };
        let s = &mut self.streams[i];
        if !s.recv_open {
            self.release_conn(h.len);
            return self.stream_error(i, Reason::STREAM_CLOSED, ev);
        }
        if len > s.recv_window {
            return Err(fail(Reason::FLOW_CONTROL_ERROR, "stream window exceeded"));
        }
        s.recv_window -= len;
        s.received += data.len() as u64;
        let end = h.has(flag::END_STREAM);
        if s.expect_len
            .is_some_and(|n| s.received > n || (end && s.received != n))
        {
            self.release_conn(h.len);
            return self.stream_error(i, Reason::PROTOCOL_ERROR, ev);
        }
        if end {
            s.recv_open = false;
        }
        let done = end && !s.send_open;
        if padding > 0 {
            self.release(h.stream, padding);
        }
        ev.data(h.stream, data, end);
        if done {
            // Half-closed (local) and now ended by the client too.
            self.forget(h.stream);
        }
        Ok(())
    }

    fn on_headers(&mut self, h: Head, p: &[u8], ev: &mut impl Events) -> Result<(), ConnError> {
        need_stream(&h)?;
        let priority = if h.has(flag::PRIORITY) { 5 } else { 0 };
        if h.has(flag::PADDED)
            && p.first()
                .is_some_and(|&pad| 1 + usize::from(pad) + priority > p.len())
        {
            // Padding that leaves no room for the priority fields (RFC 9113 6.2).
            return Err(fail(
                Reason::PROTOCOL_ERROR,
                "padding longer than its frame",
            ));
        }
        let (payload, _) = frame::unpad(&h, p)
            .map_err(|_| fail(Reason::PROTOCOL_ERROR, "padding longer than its frame"))?;
        let (dep, fragment) = frame::headers_block(&h, payload)
            .map_err(|_| fail(Reason::FRAME_SIZE_ERROR, "short priority fields"))?;
        let self_dependent = dep == Some(h.stream);
        if fragment.len() > self.limits.max_block {
            return Err(fail(Reason::ENHANCE_YOUR_CALM, "header block too large"));
        }
        if h.has(flag::END_HEADERS) {
            return self.on_block(
                h.stream,
                h.has(flag::END_STREAM),
                self_dependent,
                fragment,
                ev,
            );
        }
        self.pending = Some(Box::new(Pending {
            stream: h.stream,
            end_stream: h.has(flag::END_STREAM),
            self_dependent,
            block: fragment.to_vec(),
        }));
        Ok(())
    }

    fn on_continuation(
        &mut self,
        h: Head,
        p: &[u8],
        ev: &mut impl Events,
    ) -> Result<(), ConnError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(fail(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
        };
        if pending.block.len() + p.len() > self.limits.max_block {
            return Err(fail(Reason::ENHANCE_YOUR_CALM, "header block too large"));
        }
        pending.block.extend_from_slice(p);
        if !h.has(flag::END_HEADERS) {
            return Ok(());
        }
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        self.on_block(p.stream, p.end_stream, p.self_dependent, &p.block, ev)
    }

    /// A whole header block: a new request, or an open stream's trailers.
    fn on_block(
        &mut self,
        id: u32,
        end: bool,
        self_dependent: bool,
        block: &[u8],
        ev: &mut impl Events,
    ) -> Result<(), ConnError> {
        let existing = self.find(id);
        // Decoded whatever becomes of the stream: the table must stay in step with the client's.
        let fields = self.fields.get_or_insert_with(Box::default);
        fields.reset(self.limits.max_header_list, existing.is_some());
        // What the block may copy into the table: a list this large is refused anyway.
        let copies = self.limits.max_header_list.saturating_mul(2) + HEADER_TABLE_SIZE;
        self.decoder
            .decode(block, &mut self.scratch, copies, |n, v| fields.push(n, v))
            .map_err(|e| match e {
                hpack::DecodeError::TooMuch => {
                    fail(Reason::ENHANCE_YOUR_CALM, "header block copies too much")
                }
                _ => fail(Reason::COMPRESSION_ERROR, "header block does not decode"),
            })?;
        if let Some(i) = existing {
            let s = &self.streams[i];
            let why = if !s.recv_open {
                Some(Reason::STREAM_CLOSED)
            } else if !end
                || self_dependent
                || fields.too_large()
                || fields.malformed().is_some()
                || s.expect_len.is_some_and(|n| n != s.received)
            {
                Some(Reason::PROTOCOL_ERROR)
            } else {
                None
            };
            return match why {
                Some(reason) => self.stream_error(i, reason, ev),
                None => {
                    self.streams[i].recv_open = false;
                    let done = !self.streams[i].send_open;
                    ev.trailers(id, fields);
                    if done {
                        self.forget(id);
                    }
                    Ok(())
                }
            };
        }
        if id % 2 == 0 {
            return Err(fail(Reason::PROTOCOL_ERROR, "even stream id from a client"));
        }
        if id <= self.last_id {
            // A closed stream. Trailers corelane's reset crossed are ignored (RFC 9113 5.1);
            // anything else reuses a stream, or goes back to one left behind.
            if self.recently_reset(id) {
                return Ok(());
            }
            return Err(fail(Reason::STREAM_CLOSED, "HEADERS on a closed stream"));
        }
        self.last_id = id;
        if self.goaway.is_some() {
            // Not served: what the client sends on it is ignored too.
            self.note_reset(id);
            return Ok(());
        }
        let refuse = if self_dependent {
            Some(Reason::PROTOCOL_ERROR)
        } else if self.streams.len() >= self.limits.max_streams as usize {
            Some(Reason::REFUSED_STREAM)
        } else if fields.malformed().is_some()
            || (end && fields.content_length().is_some_and(|n| n > 0))
        {
            Some(Reason::PROTOCOL_ERROR)
        } else {
            None
        };
        if let Some(reason) = refuse {
            if reason == Reason::PROTOCOL_ERROR {
                let why = fields.malformed().unwrap_or("framing");
                tracing::debug!(stream = id, why, "malformed HTTP/2 request");
                ev.malformed(id, fields);
            }
            self.rst(id, reason);
            self.note_reset(id);
            return Ok(());
        }
        self.streams.push(Stream {
            id,
            recv_open: !end,
            send_open: true,
            half_close: false,
            send_window: i64::from(self.peer_window),
            recv_window: i64::from(self.limits.stream_window),
            recv_unacked: 0,
            expect_len: fields.content_length(),
            received: 0,
        });
        ev.request(id, fields, end);
        Ok(())
    }

    fn on_priority(&mut self, h: Head, p: &[u8], ev: &mut impl Events) -> Result<(), ConnError> {
        need_stream(&h)?;
        let reason = if p.len() != 5 {
            Reason::FRAME_SIZE_ERROR
        } else if frame::word(&p[..4]).map(|d| d & 0x7fff_ffff) == Ok(h.stream) {
            Reason::PROTOCOL_ERROR
        } else {
            return Ok(());
        };
        match self.find(h.stream) {
            Some(i) => self.stream_error(i, reason, ev),
            None => {
                self.rst(h.stream, reason);
                Ok(())
            }
        }
    }

    fn on_rst(&mut self, h: Head, p: &[u8], ev: &mut impl Events) -> Result<(), ConnError> {
        need_stream(&h)?;
        let code = frame::word(p)
            .map_err(|_| fail(Reason::FRAME_SIZE_ERROR, "RST_STREAM not 4 octets"))?;
        self.resets.0 = self.resets.0.saturating_add(1);
        let Some(i) = self.find(h.stream) else {
            // On a closed stream it changes nothing.
            return self.idle_check(h.stream, "RST_STREAM on an idle stream");
        };
        self.streams.remove(i);
        ev.reset(h.stream, Reason(code));
        self.spend_reset()
    }

    fn on_settings(&mut self, h: Head, p: &[u8]) -> Result<(), ConnError> {
        need_stream0(&h)?;
        if h.has(flag::ACK) {
            return match p.is_empty() {
                true => Ok(()),
                false => Err(fail(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS ack with a payload",
                )),
            };
        }
        let values = frame::settings(p)
            .map_err(|_| fail(Reason::FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6"))?;
        let mut window = None;
        for (id, v) in values {
            match id {
                setting::ENABLE_PUSH if v > 1 => {
                    return Err(fail(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"));
                }
                setting::INITIAL_WINDOW_SIZE => {
                    if i64::from(v) > MAX_WINDOW {
                        return Err(fail(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE too large",
                        ));
                    }
                    // The frame's last value is the one that holds: the streams are adjusted
                    // once, below.
                    window = Some(v);
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..(1 << 24)).contains(&v) {
                        return Err(fail(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = v as usize;
                }
                // HEADER_TABLE_SIZE: corelane's encoder uses no dynamic table; the others
                // concern what the client receives from a pushing server, or are advice.
                _ => {}
            }
        }
        if let Some(v) = window {
            let delta = i64::from(v) - i64::from(self.peer_window);
            for s in &mut self.streams {
                s.send_window += delta;
                if s.send_window > MAX_WINDOW {
                    return Err(fail(Reason::FLOW_CONTROL_ERROR, "stream window overflow"));
                }
            }
            self.peer_window = v;
            self.window_opened |= delta > 0;
        }
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    fn on_ping(&mut self, h: Head, p: &[u8]) -> Result<(), ConnError> {
        need_stream0(&h)?;
        if p.len() != 8 {
            return Err(fail(Reason::FRAME_SIZE_ERROR, "PING not 8 octets"));
        }
        if !h.has(flag::ACK) {
            frame::write_ping_ack(&mut self.out, p);
        }
        Ok(())
    }

    fn on_window_update(
        &mut self,
        h: Head,
        p: &[u8],
        ev: &mut impl Events,
    ) -> Result<(), ConnError> {
        let inc = frame::word(p)
            .map_err(|_| fail(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE not 4 octets"))?
            & 0x7fff_ffff;
        if h.stream == 0 {
            if inc == 0 {
                return Err(fail(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.send_window += i64::from(inc);
            if self.send_window > MAX_WINDOW {
                return Err(fail(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window overflow",
                ));
            }
            self.window_opened = true;
            return Ok(());
        }
        let Some(i) = self.find(h.stream) else {
            // On a closed stream it changes nothing.
            return self.idle_check(h.stream, "WINDOW_UPDATE on an idle stream");
        };
        let s = &mut self.streams[i];
        s.send_window += i64::from(inc);
        if inc == 0 {
            self.stream_error(i, Reason::PROTOCOL_ERROR, ev)
        } else if s.send_window > MAX_WINDOW {
            self.stream_error(i, Reason::FLOW_CONTROL_ERROR, ev)
        } else {
            self.window_opened = true;
            Ok(())
        }
    }

    /// Resets stream `streams[i]` for an error of its own, and tells `ev`. The client caused
    /// it: it draws on the reset budget as a reset of its own would (else a client could
    /// have corelane reset streams for it, CVE-2025-8671, as cheaply as rapid resets).
    fn stream_error(
        &mut self,
        i: usize,
        reason: Reason,
        ev: &mut impl Events,
    ) -> Result<(), ConnError> {
        let s = self.streams.remove(i);
        self.rst(s.id, reason);
        self.note_reset(s.id);
        ev.reset(s.id, reason);
        self.spend_reset()
    }

    fn spend_reset(&mut self) -> Result<(), ConnError> {
        self.reset_budget -= 1;
        if self.reset_budget < 0 {
            return Err(fail(Reason::ENHANCE_YOUR_CALM, "too many streams reset"));
        }
        Ok(())
    }

    /// A frame for stream `id`, which is not open: an error if the stream was never opened
    /// (idle: above the highest the client opened, or even, which only a server opens).
    fn idle_check(&self, id: u32, why: &'static str) -> Result<(), ConnError> {
        if id > self.last_id || id % 2 == 0 {
            return Err(fail(Reason::PROTOCOL_ERROR, why));
        }
        Ok(())
    }

    /// Remembers that corelane reset (or ignored) stream `id`.
    fn note_reset(&mut self, id: u32) {
        if self.recent_resets.len() < RECENT_RESETS {
            self.recent_resets.push(id);
        } else {
            self.recent_resets[self.recent_at] = id;
            self.recent_at = (self.recent_at + 1) % RECENT_RESETS;
        }
    }

    fn recently_reset(&self, id: u32) -> bool {
        self.recent_resets.contains(&id)
    }

    /// `n` bytes of stream `id`'s body were passed on (or dropped): the client may send as
    /// many again. Window updates go out once half a window is owed, not for every frame.
    pub fn release(&mut self, id: u32, n: usize) {
        self.release_conn(n);
        if let Some(i) = self.find(id) {
            let s = &mut self.streams[i];
            if !s.recv_open {
                return;
            }
            s.recv_unacked += n as u32;
            if s.recv_unacked >= self.limits.stream_window / 2 {
                frame::write_window_update(&mut self.out, id, s.recv_unacked);
                s.recv_window += i64::from(s.recv_unacked);
                s.recv_unacked = 0;
            }
        }
    }

    /// `n` body bytes of streams gone were dropped: the client may send as many again.
    pub fn release_connection(&mut self, n: usize) {
        if n > 0 {
            self.release_conn(n);
        }
    }

    fn release_conn(&mut self, n: usize) {
        self.recv_unacked += n as u32;
        if self.recv_unacked >= self.limits.conn_window / 2 {
            frame::write_window_update(&mut self.out, 0, self.recv_unacked);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }

    /// Writes a response head on stream `id`: `:status`, then `fields`; `end`: no body
    /// follows. A 1xx head (`100 Continue`) leaves the stream as it was.
    pub fn send_headers<'a>(
        &mut self,
        id: u32,
        status: u16,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        end: bool,
    ) {
        let Some(i) = self.sendable(id) else {
            return;
        };
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        hpack::encode::status(&mut block, status);
        for (n, v) in fields {
            hpack::encode::field(&mut block, n, v);
        }
        self.write_block(id, &block, end);
        self.scratch = block;
        if end {
            self.end_local(i);
        }
    }

    /// Writes a response head encoded already (`:status` first, `hpack::encode`) on stream
    /// `id`; `end`: no body follows.
    pub fn send_encoded(&mut self, id: u32, block: &[u8], end: bool) {
        let Some(i) = self.sendable(id) else {
            return;
        };
        self.write_block(id, block, end);
        if end {
            self.end_local(i);
        }
    }

    /// Writes trailers on stream `id`, which end it.
    pub fn send_trailers<'a>(
        &mut self,
        id: u32,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) {
        let Some(i) = self.sendable(id) else {
            return;
        };
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        for (n, v) in fields {
            hpack::encode::field(&mut block, n, v);
        }
        self.write_block(id, &block, true);
        self.scratch = block;
        self.end_local(i);
    }

    /// A header block as HEADERS, then CONTINUATION frames as the client's frame size needs.
    fn write_block(&mut self, id: u32, block: &[u8], end: bool) {
        if !self.table_zeroed {
            // The connection's first block starts with a table size update to 0 (see
            // `table_zeroed`).
            self.table_zeroed = true;
            let mut first = Vec::with_capacity(block.len() + 1);
            first.push(0x20);
            first.extend_from_slice(block);
            return self.write_block(id, &first, end);
        }
        let max = self.peer_max_frame;
        let mut chunks = block.chunks(max).peekable();
        let first = chunks.next().unwrap_or(&[]);
        let mut flags = if end { flag::END_STREAM } else { 0 };
        if chunks.peek().is_none() {
            flags |= flag::END_HEADERS;
        }
        frame::write_head(&mut self.out, first.len(), kind::HEADERS, flags, id);
        self.out.extend_from_slice(first);
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let flags = if last { flag::END_HEADERS } else { 0 };
            frame::write_head(&mut self.out, c.len(), kind::CONTINUATION, flags, id);
            self.out.extend_from_slice(c);
        }
    }

    /// Writes as much of `data` on stream `id` as the windows allow, in frames of the client's
    /// size; `end` marks the last frame if all of `data` went. How much went, or None if the
    /// stream is gone.
    pub fn send_data(&mut self, id: u32, data: &[u8], end: bool) -> Option<usize> {
        let i = self.sendable(id)?;
        let s = &mut self.streams[i];
        let room = s.send_window.min(self.send_window).max(0) as usize;
        let n = data.len().min(room);
        let ends = end && n == data.len();
        let mut chunks = data[..n].chunks(self.peer_max_frame).peekable();
        if n == 0 && ends {
            frame::write_head(&mut self.out, 0, kind::DATA, flag::END_STREAM, id);
        }
        while let Some(c) = chunks.next() {
            let flags = if ends && chunks.peek().is_none() {
                flag::END_STREAM
            } else {
                0
            };
            frame::write_head(&mut self.out, c.len(), kind::DATA, flags, id);
            self.out.extend_from_slice(c);
        }
        s.send_window -= n as i64;
        self.send_window -= n as i64;
        if ends {
            self.end_local(i);
        }
        Some(n)
    }

    /// The response on `streams[i]` has ended: the stream closes, with a RST_STREAM
    /// (NO_ERROR) if the client was still sending (RFC 9113 8.1: no more of it is wanted);
    /// a tunnel's stays half-closed (local) while the client still sends.
    fn end_local(&mut self, i: usize) {
        let s = &mut self.streams[i];
        if s.half_close && s.recv_open {
            s.send_open = false;
            self.reset_budget = (self.reset_budget + 1).min(RESET_BUDGET * 5);
            return;
        }
        let s = self.streams.remove(i);
        if s.recv_open {
            self.rst(s.id, Reason::NO_ERROR);
            self.note_reset(s.id);
        }
        self.reset_budget = (self.reset_budget + 1).min(RESET_BUDGET * 5);
    }

    /// Stream `id` is a tunnel's (WebSocket over HTTP/2): the end of what corelane sends on it
    /// leaves it half-closed, and the client's side goes on until it ends it (RFC 8441 4: an
    /// orderly close is END_STREAM each way).
    pub fn half_close(&mut self, id: u32) {
        if let Some(i) = self.find(id) {
            self.streams[i].half_close = true;
        }
    }

    /// Stream `id`'s index, if corelane may still send on it.
    fn sendable(&self, id: u32) -> Option<usize> {
        self.find(id).filter(|&i| self.streams[i].send_open)
    }

    /// Writes RST_STREAM for `id`, counting it unless it says NO_ERROR.
    fn rst(&mut self, id: u32, reason: Reason) {
        frame::write_rst(&mut self.out, id, reason);
        if reason != Reason::NO_ERROR {
            self.resets.1 = self.resets.1.saturating_add(1);
        }
    }

    /// RST_STREAM frames received, and sent with an error, since the last call.
    pub fn take_resets(&mut self) -> (u32, u32) {
        std::mem::take(&mut self.resets)
    }

    fn forget(&mut self, id: u32) {
        if let Some(i) = self.find(id) {
            self.streams.remove(i);
        }
    }

    /// Resets stream `id` (its response failed, or corelane gives up on it).
    pub fn reset(&mut self, id: u32, reason: Reason) {
        if let Some(i) = self.find(id) {
            self.streams.remove(i);
            self.rst(id, reason);
            self.note_reset(id);
        }
    }

    /// Says GOAWAY: streams opened after now are not served; those open go on.
    /// An error after a graceful GOAWAY says so in a second one, with the same last stream
    /// (it may not grow, RFC 9113 6.8).
    pub fn goaway(&mut self, reason: Reason, debug: &str) {
        let last = match self.goaway {
            None => self.last_id,
            Some((Reason::NO_ERROR, last)) if reason != Reason::NO_ERROR => last,
            Some(_) => return,
        };
        self.goaway = Some((reason, last));
        frame::write_goaway(&mut self.out, last, reason, debug.as_bytes());
    }

    /// Whether stream `id` is open (its response not ended, not reset).
    pub fn is_open(&self, id: u32) -> bool {
        self.find(id).is_some()
    }

    /// How many bytes stream `id` may send now.
    pub fn send_room(&self, id: u32) -> usize {
        self.find(id).map_or(0, |i| {
            self.streams[i].send_window.min(self.send_window).max(0) as usize
        })
    }

    /// Whether a window grew since the last call.
    pub fn take_window_opened(&mut self) -> bool {
        std::mem::take(&mut self.window_opened)
    }

    /// Bytes to write, in order.
    pub fn output(&self) -> &[u8] {
        &self.out[self.written..]
    }

    /// `n` bytes of [`Connection::output`] were written.
    pub fn written(&mut self, n: usize) {
        self.written += n;
        if self.written >= self.out.len() {
            self.out.clear();
            self.written = 0;
        }
    }

    /// Lends the output buffer from `take` if the connection has none (its output is written
    /// whole between bursts, and an idle connection need not keep a buffer).
    pub fn give_out(&mut self, take: impl FnOnce() -> Vec<u8>) {
        if self.out.capacity() == 0 {
            self.out = take();
            self.out.clear();
            self.written = 0;
        }
    }

    /// The output buffer back, if everything in it was written.
    pub fn take_out(&mut self) -> Option<Vec<u8>> {
        (self.output().is_empty() && self.out.capacity() > 0).then(|| {
            self.written = 0;
            std::mem::take(&mut self.out)
        })
    }

    /// No stream open, no header block half received, nothing to write.
    pub fn is_quiet(&self) -> bool {
        self.streams.is_empty() && self.pending.is_none() && self.output().is_empty()
    }

    /// A header block is half received (its CONTINUATION frames are due).
    pub fn mid_block(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the preface and first SETTINGS have come.
    pub fn started(&self) -> bool {
        self.settings_seen
    }

    /// GOAWAY went either way and no stream is left: the connection may close.
    pub fn done(&self) -> bool {
        (self.goaway.is_some() || self.peer_goaway)
            && self.streams.is_empty()
            && self.pending.is_none()
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Gives back working memory before the connection waits idle (parked).
    pub fn shrink(&mut self) {
        self.scratch = Vec::new();
        self.fields = None;
        self.recent_resets = Vec::new();
        self.recent_at = 0;
        self.streams = Vec::new();
        self.out = Vec::new();
        self.written = 0;
        self.decoder.shrink();
    }
}

fn need_stream(h: &Head) -> Result<(), ConnError> {
    match h.stream {
        0 => Err(fail(Reason::PROTOCOL_ERROR, "stream frame on stream 0")),
        _ => Ok(()),
    }
}

fn need_stream0(h: &Head) -> Result<(), ConnError> {
    match h.stream {
        0 => Ok(()),
        _ => Err(fail(Reason::PROTOCOL_ERROR, "connection frame on a stream")),
    }
}

impl From<Layout> for ConnError {
    fn from(_: Layout) -> Self {
        fail(Reason::FRAME_SIZE_ERROR, "bad frame layout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_streams: 2,
        stream_window: 100_000,
        conn_window: 65_535,
        max_header_list: 1000,
        max_block: 2000,
    };

    /// What `Events` saw, as text.
    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Events for Seen {
        fn request(&mut self, stream: u32, f: &Fields, end: bool) {
            let path = String::from_utf8_lossy(f.path().unwrap_or(b"")).into_owned();
            let big = if f.too_large() { " too large" } else { "" };
            self.0
                .push(format!("request {stream} {path} end={end}{big}"));
        }
        fn data(&mut self, stream: u32, data: &[u8], end: bool) {
            let d = String::from_utf8_lossy(data);
            self.0.push(format!("data {stream} {d} end={end}"));
        }
        fn trailers(&mut self, stream: u32, f: &Fields) {
            self.0.push(format!("trailers {stream} {}", f.len()));
        }
        fn reset(&mut self, stream: u32, reason: Reason) {
            self.0.push(format!("reset {stream} {reason}"));
        }
        fn malformed(&mut self, stream: u32, f: &Fields) {
            let method = String::from_utf8_lossy(f.method()).into_owned();
            self.0.push(format!("malformed {stream} {method}"));
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        frame::write_head(&mut f, payload.len(), kind, flags, stream);
        f.extend_from_slice(payload);
        f
    }

    const FLAGS_END: u8 = flag::END_HEADERS | flag::END_STREAM;

    fn get(path: &str) -> Vec<u8> {
        let mut b = vec![0x82, 0x86, 0x41, 1, b'h', 0x04];
        b.push(path.len() as u8);
        b.extend_from_slice(path.as_bytes());
        b
    }

    fn start() -> Vec<u8> {
        let mut b = frame::PREFACE.to_vec();
        b.extend(frame(kind::SETTINGS, 0, 0, &[]));
        b
    }

    /// A connection past its preface with a GET (no body) on each of `ids`, its output
    /// written.
    fn with_gets(ids: &[u32]) -> Connection {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        for &id in ids {
            let flags = flag::END_HEADERS | flag::END_STREAM;
            input.extend(frame(kind::HEADERS, flags, id, &get(&format!("/{id}"))));
        }
        feed(&mut c, &input).unwrap();
        drain(&mut c);
        c
    }

    /// The frames in `out`: (kind, flags, stream, payload).
    fn frames(out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        let mut pos = 0;
        while let Some(h) = Head::parse(&out[pos..]) {
            let p = out[pos + 9..pos + 9 + h.len].to_vec();
            v.push((h.kind, h.flags, h.stream, p));
            pos += 9 + h.len;
        }
        assert_eq!(pos, out.len(), "whole frames only");
        v
    }

    fn drain(c: &mut Connection) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let f = frames(c.output());
        let n = c.output().len();
        c.written(n);
        f
    }

    fn feed(c: &mut Connection, bytes: &[u8]) -> Result<Seen, ConnError> {
        let mut seen = Seen::default();
        let used = c.recv(bytes, &mut seen)?;
        assert_eq!(used, bytes.len(), "whole frames are used");
        Ok(seen)
    }

    #[test]
    fn settings_go_first_and_are_acked() {
        let mut c = Connection::new(LIMITS);
        let first = drain(&mut c);
        assert_eq!(first[0].0, kind::SETTINGS);
        assert!(first[0].3.chunks(6).any(|s| s == [0, 4, 0, 1, 0x86, 0xa0]));
        // Extended CONNECT (RFC 8441) is taken.
        assert!(first[0].3.chunks(6).any(|s| s == [0, 8, 0, 0, 0, 1]));
        // A connection window below RFC 9113's initial 65,535 needs no update...
        assert_eq!(first.len(), 1);
        // ...and one above it is announced at once.
        let mut wide = Connection::new(Limits {
            conn_window: 100_000,
            ..LIMITS
        });
        let wide = drain(&mut wide);
        assert_eq!(
            wide[1],
            (kind::WINDOW_UPDATE, 0, 0, 34_465u32.to_be_bytes().to_vec())
        );
        feed(&mut c, &start()).unwrap();
        let acks = drain(&mut c);
        assert_eq!(acks, vec![(kind::SETTINGS, flag::ACK, 0, vec![])]);
        assert!(c.started() && c.is_quiet());
    }

    /// Input cut anywhere is resumed: fed one byte at a time, the same events come, in the
    /// same order, as fed whole.
    #[test]
    fn every_cut_of_the_input_gives_the_same_events() {
        let mut input = start();
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/a")));
        input.extend(frame(kind::DATA, 0, 1, b"hello"));
        input.extend(frame(kind::DATA, flag::END_STREAM, 1, b" world"));
        input.extend(frame(kind::PING, 0, 0, b"pingpong"));
        let mut whole = Connection::new(LIMITS);
        let all = feed(&mut whole, &input).unwrap().0;
        assert_eq!(
            all,
            [
                "request 1 /a end=false",
                "data 1 hello end=false",
                "data 1  world end=true"
            ]
        );
        let mut c = Connection::new(LIMITS);
        let (mut seen, mut held) = (Seen::default(), Vec::new());
        for &b in &input {
            held.push(b);
            let used = c.recv(&held, &mut seen).unwrap();
            held.drain(..used);
        }
        assert!(held.is_empty());
        assert_eq!(seen.0, all);
        assert_eq!(drain(&mut c), drain(&mut whole));
    }

    #[test]
    fn a_response_follows_the_client_windows() {
        let mut c = Connection::new(LIMITS);
        drain(&mut c);
        let mut input = start();
        // The client allows 10 bytes per stream, and 65,535 on the connection.
        input.extend(frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]));
        input.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &get("/"),
        ));
        feed(&mut c, &input).unwrap();
        drain(&mut c);
        c.send_headers(1, 200, [(&b"x-a"[..], &b"b"[..])].into_iter(), false);
        assert_eq!(c.send_data(1, &[7u8; 25], true), Some(10));
        let out = drain(&mut c);
        assert_eq!(out[0].0, kind::HEADERS);
        assert_eq!(out[0].1, flag::END_HEADERS);
        assert_eq!((out[1].0, out[1].1, out[1].3.len()), (kind::DATA, 0, 10));
        assert_eq!(c.send_room(1), 0);
        assert!(!c.take_window_opened());
        // The stream's window grows by 100: the rest goes, and ends the stream.
        feed(
            &mut c,
            &frame(kind::WINDOW_UPDATE, 0, 1, &100u32.to_be_bytes()),
        )
        .unwrap();
        assert!(c.take_window_opened());
        assert_eq!(c.send_data(1, &[7u8; 15], true), Some(15));
        let out = drain(&mut c);
        assert_eq!((out[0].1, out[0].3.len()), (flag::END_STREAM, 15));
        assert!(!c.is_open(1) && c.is_quiet());
    }

    #[test]
    fn the_client_windows_are_given_back_in_halves_and_enforced() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/up")));
        input.extend(frame(kind::DATA, 0, 1, &[1u8; 16_000]));
        input.extend(frame(kind::DATA, 0, 1, &[1u8; 16_000]));
        feed(&mut c, &input).unwrap();
        drain(&mut c);
        let update = |id: u32, n: u32| (kind::WINDOW_UPDATE, 0, id, n.to_be_bytes().to_vec());
        // Less than half of either window owed: nothing yet.
        c.release(1, 32_000);
        assert!(drain(&mut c).is_empty());
        // Half the connection's (65,535) owed: it is given back.
        feed(&mut c, &frame(kind::DATA, 0, 1, &[1u8; 16_000])).unwrap();
        c.release(1, 16_000);
        assert_eq!(drain(&mut c), vec![update(0, 48_000)]);
        // Half the stream's (100,000) owed.
        feed(&mut c, &frame(kind::DATA, 0, 1, &[1u8; 4_000])).unwrap();
        c.release(1, 4_000);
        assert_eq!(drain(&mut c), vec![update(1, 52_000)]);
        // The connection's window is now 65,535 - 52,000 + 48,000: that much may come, not
        // a byte more.
        for n in [16_384, 16_384, 16_384, 12_383] {
            feed(&mut c, &frame(kind::DATA, 0, 1, &vec![1u8; n])).unwrap();
        }
        let err = feed(&mut c, &frame(kind::DATA, 0, 1, &[1u8; 1])).err();
        assert_eq!(err.map(|e| e.reason), Some(Reason::FLOW_CONTROL_ERROR));
    }

    #[test]
    fn a_head_larger_than_a_frame_goes_on_in_continuations() {
        let mut c = with_gets(&[1]);
        let big = vec![b'v'; 40_000];
        c.send_headers(1, 200, [(&b"x-big"[..], &big[..])].into_iter(), true);
        let out = drain(&mut c);
        let kinds: Vec<_> = out.iter().map(|f| (f.0, f.1, f.3.len())).collect();
        assert_eq!(
            kinds,
            [
                (kind::HEADERS, flag::END_STREAM, 16_384),
                (kind::CONTINUATION, 0, 16_384),
                (kind::CONTINUATION, flag::END_HEADERS, 40_013 - 32_768),
            ]
        );
        let block: Vec<u8> = out.iter().flat_map(|f| f.3.clone()).collect();
        let mut fields = Vec::new();
        hpack::Decoder::new(4096)
            .decode(&block, &mut Vec::new(), usize::MAX, |n, v| {
                fields.push((n.to_vec(), v.len()))
            })
            .unwrap();
        assert_eq!(
            fields,
            [(b":status".to_vec(), 3), (b"x-big".to_vec(), 40_000)]
        );
    }

    #[test]
    fn a_response_that_ends_first_resets_the_request_with_no_error() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/early")));
        feed(&mut c, &input).unwrap();
        drain(&mut c);
        c.send_headers(1, 413, std::iter::empty(), true);
        let out = drain(&mut c);
        assert_eq!(
            out[1],
            (kind::RST_STREAM, 0, 1, 0u32.to_be_bytes().to_vec())
        );
        // The rest of the body, still in flight, is dropped without a word.
        let seen = feed(&mut c, &frame(kind::DATA, 0, 1, b"late")).unwrap();
        assert!(seen.0.is_empty() && drain(&mut c).is_empty());
    }

    #[test]
    fn header_blocks_span_continuations_and_trailers_end_a_stream() {
        let mut c = Connection::new(LIMITS);
        let block = get("/split");
        let mut input = start();
        input.extend(frame(kind::HEADERS, 0, 1, &block[..3]));
        input.extend(frame(kind::CONTINUATION, 0, 1, &block[3..5]));
        input.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 1, &block[5..]));
        // Trailers: one literal field, grpc-status: 0.
        let mut t = vec![0x00, 11];
        t.extend_from_slice(b"grpc-status");
        t.extend_from_slice(&[1, b'0']);
        input.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &t,
        ));
        let seen = feed(&mut c, &input).unwrap();
        assert_eq!(seen.0, ["request 1 /split end=false", "trailers 1 1"]);
        // Trailers without END_STREAM are a stream error.
        let mut input = frame(kind::HEADERS, flag::END_HEADERS, 3, &get("/x"));
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 3, &t));
        let seen = feed(&mut c, &input).unwrap();
        assert_eq!(seen.0, ["request 3 /x end=false", "reset 3 PROTOCOL_ERROR"]);
    }

    #[test]
    fn a_malformed_request_is_reset_and_told_as_such() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        // GET with no `:path`; then a request that says a body it does not send.
        input.extend(frame(
            kind::HEADERS,
            FLAGS_END,
            1,
            &[0x82, 0x86, 0x41, 1, b'h'],
        ));
        let mut cl = get("/cl");
        cl.extend_from_slice(&[0x0f, 0x0d, 1, b'5']);
        input.extend(frame(kind::HEADERS, FLAGS_END, 3, &cl));
        input.extend(frame(kind::HEADERS, FLAGS_END, 5, &get("/fine")));
        let seen = feed(&mut c, &input).unwrap();
        assert_eq!(
            seen.0,
            [
                "malformed 1 GET",
                "malformed 3 GET",
                "request 5 /fine end=true"
            ]
        );
        let out = drain(&mut c);
        for id in [1, 3] {
            assert!(out.contains(&(kind::RST_STREAM, 0, id, 1u32.to_be_bytes().to_vec())));
        }
    }

    #[test]
    fn a_tunnels_stream_half_closes_and_ends_with_the_clients_end() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/ws")));
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 3, &get("/plain")));
        feed(&mut c, &input).unwrap();
        drain(&mut c);
        c.half_close(1);
        for id in [1, 3] {
            c.send_headers(id, 200, std::iter::empty(), false);
            assert_eq!(c.send_data(id, b"bye", true), Some(3));
        }
        // The plain stream is done (the client is told to stop, NO_ERROR); the tunnel's
        // stays open for what the client still sends.
        let out = drain(&mut c);
        assert!(out.contains(&(kind::RST_STREAM, 0, 3, 0u32.to_be_bytes().to_vec())));
        assert!(
            !out.iter().any(|f| f.0 == kind::RST_STREAM && f.2 == 1),
            "{out:?}"
        );
        assert!(c.is_open(1) && !c.is_open(3));
        assert_eq!(
            c.send_data(1, b"more", false),
            None,
            "nothing after the end"
        );
        let seen = feed(&mut c, &frame(kind::DATA, 0, 1, b"after")).unwrap();
        assert_eq!(seen.0, ["data 1 after end=false"]);
        assert!(c.is_open(1));
        let seen = feed(&mut c, &frame(kind::DATA, flag::END_STREAM, 1, b"")).unwrap();
        assert_eq!(seen.0, ["data 1  end=true"]);
        assert!(!c.is_open(1) && c.open_streams() == 0);
    }

    #[test]
    fn streams_past_the_limit_are_refused_and_lists_past_the_size_flagged() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        for id in [1, 3, 5] {
            input.extend(frame(kind::HEADERS, flag::END_HEADERS, id, &get("/")));
        }
        let seen = feed(&mut c, &input).unwrap();
        assert_eq!(seen.0.len(), 2);
        let out = drain(&mut c);
        assert!(out.contains(&(kind::RST_STREAM, 0, 5, 7u32.to_be_bytes().to_vec())));
        c.reset(1, Reason::CANCEL);
        // One field of 1,000 bytes: over the 1,000 the list may hold with its overhead.
        let mut big = get("/big");
        big.extend_from_slice(&[0x00, 1, b'x', 0x7f, 0xe9, 0x06]);
        big.extend(std::iter::repeat_n(b'y', 1000));
        let seen = feed(&mut c, &frame(kind::HEADERS, flag::END_HEADERS, 7, &big)).unwrap();
        assert_eq!(seen.0, ["request 7 /big end=false too large"]);
    }

    #[test]
    fn a_parked_connection_keeps_its_table_and_windows() {
        // Its GET has a literal with incremental indexing: `:authority: h` is in the table.
        let mut c = with_gets(&[1]);
        c.send_headers(1, 204, std::iter::empty(), true);
        drain(&mut c);
        c.shrink();
        // Index 62 is that entry.
        let block = [0x82, 0x86, 0xbe, 0x04, 2, b'/', b'2'];
        let frame = frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &block,
        );
        let seen = feed(&mut c, &frame).unwrap();
        assert_eq!(seen.0, ["request 3 /2 end=true"]);
    }
    /// CVE-2025-8671: streams the client has corelane reset (here by a WINDOW_UPDATE of 0)
    /// draw on the same budget as its own resets.
    #[test]
    fn provoked_stream_errors_spend_the_reset_budget() {
        let mut c = Connection::new(LIMITS);
        feed(&mut c, &start()).unwrap();
        let mut id = 1;
        let err = loop {
            let mut input = frame(kind::HEADERS, flag::END_HEADERS, id, &get("/"));
            input.extend(frame(kind::WINDOW_UPDATE, 0, id, &0u32.to_be_bytes()));
            match feed(&mut c, &input) {
                Ok(seen) => assert_eq!(seen.0[1], format!("reset {id} PROTOCOL_ERROR")),
                Err(e) => break e,
            }
            drain(&mut c);
            id += 2;
        };
        assert_eq!(err.reason, Reason::ENHANCE_YOUR_CALM);
        assert_eq!(id, 1 + 2 * RESET_BUDGET as u32);
    }

    /// Frames on closed streams: ignored on a stream corelane reset (the client may have sent
    /// them before it knew), a stream error (DATA) or a connection error (HEADERS) on others;
    /// on streams never opened (even, or above the last), a connection error.
    #[test]
    fn frames_on_closed_and_idle_streams() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        input.extend(frame(kind::HEADERS, flag::END_HEADERS, 1, &get("/reset")));
        input.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            3,
            &get("/done"),
        ));
        feed(&mut c, &input).unwrap();
        c.reset(1, Reason::CANCEL);
        c.send_headers(3, 204, std::iter::empty(), true);
        drain(&mut c);
        // In flight when corelane reset stream 1: ignored, no answer.
        let mut late = frame(kind::DATA, 0, 1, b"late");
        late.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &[0x40, 1, b'x', 0],
        ));
        late.extend(frame(kind::WINDOW_UPDATE, 0, 3, &5u32.to_be_bytes()));
        late.extend(frame(kind::RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        assert!(feed(&mut c, &late).unwrap().0.is_empty());
        assert!(drain(&mut c).is_empty());
        // DATA on stream 3, which ended both ways: STREAM_CLOSED for it.
        feed(&mut c, &frame(kind::DATA, 0, 3, b"x")).unwrap();
        assert_eq!(
            drain(&mut c),
            vec![(kind::RST_STREAM, 0, 3, 5u32.to_be_bytes().to_vec())]
        );
        let conn_error = |bytes: Vec<u8>| {
            let mut c = Connection::new(LIMITS);
            let mut input = start();
            input.extend(frame(
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                5,
                &get("/"),
            ));
            input.extend(bytes);
            feed(&mut c, &input).err().map(|e| e.reason)
        };
        // HEADERS on a stream below the last: reused or left behind.
        let lower = frame(kind::HEADERS, flag::END_HEADERS, 3, &get("/"));
        assert_eq!(conn_error(lower), Some(Reason::STREAM_CLOSED));
        for f in [
            frame(kind::WINDOW_UPDATE, 0, 2, &1u32.to_be_bytes()),
            frame(kind::RST_STREAM, 0, 4, &8u32.to_be_bytes()),
            frame(kind::DATA, 0, 7, b"x"),
            frame(kind::WINDOW_UPDATE, 0, 7, &1u32.to_be_bytes()),
        ] {
            assert_eq!(conn_error(f), Some(Reason::PROTOCOL_ERROR));
        }
    }

    #[test]
    fn the_first_block_zeroes_the_clients_table_and_a_later_error_says_goaway_again() {
        let mut c = with_gets(&[1, 3]);
        c.send_headers(1, 200, std::iter::empty(), true);
        c.send_headers(3, 200, std::iter::empty(), true);
        let out = drain(&mut c);
        assert_eq!(
            (&out[0].3[..], &out[1].3[..]),
            (&[0x20, 0x88][..], &[0x88][..])
        );
        c.goaway(Reason::NO_ERROR, "draining");
        c.goaway(Reason::NO_ERROR, "again");
        let mut more = frame(kind::HEADERS, flag::END_HEADERS, 5, &get("/ignored"));
        more.extend(frame(kind::DATA, 0, 5, b"ignored too"));
        assert!(feed(&mut c, &more).unwrap().0.is_empty());
        c.goaway(Reason::PROTOCOL_ERROR, "bad");
        let out = drain(&mut c);
        let goaways: Vec<_> = out.iter().map(|f| (f.0, f.3[..8].to_vec())).collect();
        let last3 = |code: u32| [3u32.to_be_bytes(), code.to_be_bytes()].concat();
        assert_eq!(
            goaways,
            [(kind::GOAWAY, last3(0)), (kind::GOAWAY, last3(1))],
            "one graceful, then the error, both naming stream 3"
        );
    }

    #[test]
    fn padding_that_swallows_the_priority_fields_is_a_protocol_error() {
        let mut c = Connection::new(LIMITS);
        let mut input = start();
        let flags = flag::END_HEADERS | flag::PADDED | flag::PRIORITY;
        input.extend(frame(kind::HEADERS, flags, 1, &[4, 0, 0, 0, 0, 16]));
        let err = feed(&mut c, &input).err().map(|e| e.reason);
        assert_eq!(err, Some(Reason::PROTOCOL_ERROR));
    }
}
