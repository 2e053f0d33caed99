//! RESP2 framing, sans-IO: finds where commands and replies end in a byte buffer and where
//! their parts are, without copying and without re-scanning what an earlier call has seen.
//!
//! - [`RequestParser`] reads client commands: RESP arrays of bulk strings, and Redis' inline
//!   form (`PING\r\n`, words split on spaces and tabs; quoting is not supported). It returns the
//!   argument byte ranges so the engine can route on the key and forward the bytes unchanged.
//! - [`ReplyScanner`] finds the end of one server reply of any RESP2 type, nested arrays
//!   included, with a depth bound.
//! - Small readers ([`integer`], [`array_items`]) look inside a complete reply for merging.
//!
//! Errors carry the text Redis itself sends for the same mistake (`Protocol error: ...`).
//! RESP3 types are not understood: corelane refuses `HELLO 3`, so a server never sends them.

use std::ops::Range;

/// A complete client command: `len` bytes at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'p> {
    pub len: usize,
    /// Argument ranges into the buffer; empty for an empty command (`*0`, a blank line), which
    /// Redis ignores.
    pub args: &'p [Range<usize>],
    /// Sent in the inline form; it must be re-encoded before a server sees it.
    pub inline: bool,
}

/// Bounds on one command.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_args: usize,
    pub max_bulk_len: usize,
}

/// Longest inline command, as Redis (`PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Longest `*N` / `$N` header line we wait for.
const MAX_HEADER: usize = 32;

/// A client sent something that is not RESP; the text is Redis' own error for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

/// Parses client commands one at a time, keeping its place inside a command that has not fully
/// arrived, so a large command is scanned once however many reads it takes.
///
/// Offsets are relative to the start of the buffer passed in, which must begin at the command
/// being parsed until it is complete (consume whole commands only).
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Bytes of the current command already parsed.
    pos: usize,
    /// Arguments announced by `*N`, once its line was read.
    expected: Option<usize>,
    args: Vec<Range<usize>>,
}

impl RequestParser {
    /// The next complete command at the start of `buf`, `Ok(None)` if more bytes are needed.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: Limits,
    ) -> Result<Option<Request<'_>>, ProtocolError> {
        if self.expected.is_none() {
            if self.pos == 0 {
                self.args.clear();
            }
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {}
                Some(_) => return self.inline(buf, limits),
            }
            let Some((n, next)) = header_line(buf, 0, "invalid multibulk length")? else {
                return Ok(None);
            };
            if n <= 0 {
                // `*0` and `*-1` are no command at all.
                return Ok(Some(self.done(next, false)));
            }
            if n as usize > limits.max_args {
                return Err(ProtocolError("invalid multibulk length"));
            }
            self.expected = Some(n as usize);
            self.pos = next;
            // As Redis: the announced count is not trusted for more than a small reservation.
            self.args.reserve((n as usize).min(1024));
        }
        let expected = self.expected.unwrap_or(0);
        while self.args.len() < expected {
            match buf.get(self.pos) {
                None => return Ok(None),
                Some(b'$') => {}
                Some(&b) => return Err(bad_bulk_prefix(b)),
            }
            let Some((n, start)) = header_line(buf, self.pos, "invalid bulk length")? else {
                return Ok(None);
            };
            if n < 0 || n as usize > limits.max_bulk_len {
                return Err(ProtocolError("invalid bulk length"));
            }
            let end = start + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("expected CRLF after bulk string"));
            }
            self.args.push(start..end);
            self.pos = end + 2;
        }
        let len = self.pos;
        Ok(Some(self.done(len, false)))
    }

    fn inline(&mut self, buf: &[u8], limits: Limits) -> Result<Option<Request<'_>>, ProtocolError> {
        // A line longer than the limit is refused whether or not its end came in the same
        // read, so the answer does not depend on how the bytes were split.
        let Some(nl) = memchr(b'\n', &buf[..buf.len().min(MAX_INLINE + 1)]) else {
            if buf.len() > MAX_INLINE {
                return Err(ProtocolError("too big inline request"));
            }
            return Ok(None);
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        self.args.clear();
        let mut i = 0;
        while i < line_end {
            while i < line_end && matches!(buf[i], b' ' | b'\t') {
                i += 1;
            }
            let start = i;
            while i < line_end && !matches!(buf[i], b' ' | b'\t') {
                if matches!(buf[i], b'"' | b'\'') {
                    return Err(ProtocolError("unbalanced quotes in request"));
                }
                i += 1;
            }
            if start < i {
                if self.args.len() == limits.max_args {
                    return Err(ProtocolError("invalid multibulk length"));
                }
                if i - start > limits.max_bulk_len {
                    return Err(ProtocolError("invalid bulk length"));
                }
                self.args.push(start..i);
            }
        }
        Ok(Some(self.done(nl + 1, true)))
    }

    /// Gives back the argument list's memory if a large command grew it and no command is
    /// half-parsed (call between commands, when the client is idle).
    pub fn shrink(&mut self) {
        if self.pos == 0 && self.expected.is_none() && self.args.capacity() > 16 {
            self.args = Vec::new();
        }
    }

    /// Gives back the argument list's memory whatever its size (a parked client).
    pub fn release(&mut self) {
        if self.pos == 0 && self.expected.is_none() {
            self.args = Vec::new();
        }
    }

    fn done(&mut self, len: usize, inline: bool) -> Request<'_> {
        self.pos = 0;
        self.expected = None;
        Request {
            len,
            args: &self.args,
            inline,
        }
    }
}

fn bad_bulk_prefix(_got: u8) -> ProtocolError {
    // Redis says "expected '$', got 'x'"; a static message keeps errors allocation-free.
    ProtocolError("expected '$'")
}

/// Reads `<type><integer>\r\n` at `at`: the integer and the offset after the line.
fn header_line(
    buf: &[u8],
    at: usize,
    what: &'static str,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buf[at + 1..];
    let Some(cr) = memchr(b'\r', &rest[..rest.len().min(MAX_HEADER)]) else {
        if rest.len() >= MAX_HEADER {
            return Err(ProtocolError(what));
        }
        return Ok(None);
    };
    let Some(&lf) = rest.get(cr + 1) else {
        return Ok(None);
    };
    if lf != b'\n' {
        return Err(ProtocolError(what));
    }
    let n = parse_int(&rest[..cr]).ok_or(ProtocolError(what))?;
    Ok(Some((n, at + 1 + cr + 2)))
}

/// A decimal integer with optional sign, as RESP writes them; no spaces, no overflow.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // Accumulated as a negative number, so that i64::MIN parses too.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg { Some(v) } else { v.checked_neg() }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// A server reply that is not RESP2: the connection to that server cannot be trusted after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError(pub &'static str);

/// Deepest array nesting accepted in a reply.
pub const MAX_DEPTH: usize = 64;
/// Largest bulk reply accepted (Redis' own ceiling).
pub const MAX_REPLY_BULK: i64 = 512 << 20;

/// Finds the end of one reply, resuming where the previous call stopped.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    pos: usize,
    /// Elements still to read of each open array, innermost last.
    open: Vec<i64>,
}

impl ReplyScanner {
    /// Length of the complete reply at the start of `buf`, or `None` if it has not all arrived.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        loop {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            let rest = &buf[self.pos + 1..];
            let Some(nl) = memchr(b'\n', rest) else {
                if kind != b'+' && kind != b'-' && rest.len() > MAX_HEADER {
                    return Err(ReplyError("reply header too long"));
                }
                return Ok(None);
            };
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err(ReplyError("reply line does not end in CRLF"));
            }
            let line = &rest[..nl - 1];
            let mut next = self.pos + 1 + nl + 1;
            match kind {
                b'+' | b'-' => {}
                b':' => {
                    parse_int(line).ok_or(ReplyError("bad integer reply"))?;
                }
                b'$' => {
                    let n = parse_int(line).ok_or(ReplyError("bad bulk length"))?;
                    if n >= 0 {
                        if n > MAX_REPLY_BULK {
                            return Err(ReplyError("bulk reply too long"));
                        }
                        let end = next + n as usize;
                        if buf.len() < end + 2 {
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(ReplyError("bulk reply does not end in CRLF"));
                        }
                        next = end + 2;
                    } else if n != -1 {
                        return Err(ReplyError("bad bulk length"));
                    }
                }
                b'*' => {
                    let n = parse_int(line).ok_or(ReplyError("bad array length"))?;
                    if n > 0 {
                        if self.open.len() == MAX_DEPTH {
                            return Err(ReplyError("reply nested too deeply"));
                        }
                        self.pos = next;
                        self.open.push(n);
                        continue;
                    } else if n < -1 {
                        return Err(ReplyError("bad array length"));
                    }
                }
                _ => return Err(ReplyError("unknown reply type")),
            }
            self.pos = next;
            // One element is complete: close every array it completes.
            loop {
                match self.open.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// The value of a complete integer reply (`:5\r\n`).
pub fn integer(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_int(body)
}

/// Whether a complete reply is an error (`-ERR ...`).
pub fn is_error(reply: &[u8]) -> bool {
    reply.first() == Some(&b'-')
}

/// The items of a complete array reply whose items are bulk strings or nils (what MGET
/// returns), as byte ranges of each whole item (`$3\r\nfoo\r\n`, `$-1\r\n`).
pub fn array_items(reply: &[u8], out: &mut Vec<Range<usize>>) -> Option<()> {
    out.clear();
    let nl = memchr(b'\n', reply)?;
    let n = parse_int(reply.get(1..nl.checked_sub(1)?)?)?;
    if reply[0] != b'*' || n < 0 {
        return None;
    }
    let mut pos = nl + 1;
    for _ in 0..n {
        let start = pos;
        if reply.get(pos) != Some(&b'$') {
            return None;
        }
        let rel = memchr(b'\n', &reply[pos..])?;
        let len = parse_int(reply.get(pos + 1..pos + rel - 1)?)?;
        pos += rel + 1;
        if len >= 0 {
            pos += len as usize + 2;
        }
        if pos > reply.len() {
            return None;
        }
        out.push(start..pos);
    }
    (pos == reply.len()).then_some(())
}

/// Appends a RESP array header.
pub fn write_array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    write_decimal(out, n as i64);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string.
pub fn write_bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'$');
    write_decimal(out, s.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer reply.
pub fn write_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    write_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn write_decimal(out: &mut Vec<u8>, n: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_args: 1000,
        max_bulk_len: 1 << 20,
    };

    /// Length, arguments, inline.
    type Parsed = (usize, Vec<Vec<u8>>, bool);

    fn parse_all(bytes: &[u8]) -> Result<Option<Parsed>, ProtocolError> {
        let mut p = RequestParser::default();
        Ok(p.parse(bytes, L)?.map(|r| {
            (
                r.len,
                r.args.iter().map(|a| bytes[a.clone()].to_vec()).collect(),
                r.inline,
            )
        }))
    }

    #[test]
    fn golden_requests() {
        let v = |s: &[&str]| s.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        type Case = (&'static [u8], usize, Vec<Vec<u8>>, bool);
        let cases: &[Case] = &[
            (b"*1\r\n$4\r\nPING\r\n", 14, v(&["PING"]), false),
            (
                b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nrest",
                26,
                v(&["SET", "k", ""]),
                false,
            ),
            (b"*0\r\n", 4, vec![], false),
            (b"*-1\r\n", 5, vec![], false),
            (b"PING\r\n", 6, v(&["PING"]), true),
            (b"get  a\tb \n", 10, v(&["get", "a", "b"]), true),
            (b"\r\n", 2, vec![], true),
            (b"$bin\x00\xff\r\n", 8, vec![b"$bin\x00\xff".to_vec()], true),
        ];
        for (bytes, len, args, inline) in cases {
            let got = parse_all(bytes).unwrap().unwrap();
            assert_eq!(
                got,
                (*len, args.clone(), *inline),
                "{:?}",
                bytes.escape_ascii()
            );
        }
    }

    #[test]
    fn every_prefix_is_incomplete_never_an_error() {
        let whole: &[&[u8]] = &[
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n",
            b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
            b"GET key\r\n",
        ];
        for w in whole {
            for cut in 0..w.len() {
                assert_eq!(parse_all(&w[..cut]), Ok(None), "{cut}");
            }
            // Fed one byte at a time to one parser, it resumes and gives the same answer.
            let mut p = RequestParser::default();
            for cut in 0..w.len() {
                assert!(p.parse(&w[..cut], L).unwrap().is_none());
            }
            let r = p.parse(w, L).unwrap().unwrap();
            assert_eq!(r.len, w.len());
        }
    }

    #[test]
    fn errors_say_what_redis_says() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "invalid multibulk length"),
            (b"*2000\r\n", "invalid multibulk length"),
            (b"*1\r\n:1\r\n", "expected '$'"),
            (b"*1\r\n$-5\r\n", "invalid bulk length"),
            (b"*1\r\n$9999999999\r\n", "invalid bulk length"),
            (b"*1\r\n$1\r\nab\r\n", "expected CRLF after bulk string"),
            (b"*1\r\n$1\rx", "invalid bulk length"),
            (b"SET \"a b\" c\r\n", "unbalanced quotes in request"),
            (
                b"*11111111111111111111111111111111111",
                "invalid multibulk length",
            ),
        ];
        for (bytes, msg) in cases {
            assert_eq!(
                parse_all(bytes),
                Err(ProtocolError(msg)),
                "{:?}",
                bytes.escape_ascii()
            );
        }
        let big = vec![b'a'; MAX_INLINE + 1];
        assert_eq!(
            parse_all(&big),
            Err(ProtocolError("too big inline request"))
        );
    }

    #[test]
    fn inline_limit_does_not_depend_on_reads() {
        // Found by fuzzing: a line over the limit was accepted when its newline came in the
        // same read, and refused when it came in a later one.
        let too_big = Err(ProtocolError("too big inline request"));
        let mut long = vec![b'a'; MAX_INLINE + 1];
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&long[..MAX_INLINE + 1]), too_big);
        assert_eq!(parse_all(&long), too_big);
        let mut longest = vec![b'a'; MAX_INLINE];
        longest.push(b'\n');
        assert_eq!(parse_all(&longest[..MAX_INLINE]), Ok(None));
        assert_eq!(parse_all(&longest).unwrap().unwrap().0, MAX_INLINE + 1);
    }

    fn scan_all(bytes: &[u8]) -> Result<Option<usize>, ReplyError> {
        ReplyScanner::default().scan(bytes)
    }

    #[test]
    fn golden_replies() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR no\r\n",
            b":-42\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n$-1\r\n",
            b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n+x\r\n",
            b"*3\r\n*0\r\n*1\r\n*1\r\n:1\r\n$2\r\nab\r\n",
        ];
        for c in cases {
            let mut with_tail = c.to_vec();
            with_tail.extend_from_slice(b"+next\r\n");
            assert_eq!(
                scan_all(&with_tail),
                Ok(Some(c.len())),
                "{:?}",
                c.escape_ascii()
            );
            for cut in 0..c.len() {
                assert_eq!(
                    scan_all(&c[..cut]),
                    Ok(None),
                    "{:?} cut {cut}",
                    c.escape_ascii()
                );
            }
            let mut s = ReplyScanner::default();
            for cut in 0..c.len() {
                assert_eq!(s.scan(&c[..cut]), Ok(None));
            }
            assert_eq!(s.scan(c), Ok(Some(c.len())));
        }
    }

    #[test]
    fn bad_replies_are_errors() {
        let cases: &[&[u8]] = &[
            b"%1\r\n",
            b":x\r\n",
            b"$3\r\nfoox\r\n",
            b"$-2\r\n",
            b"*-2\r\n",
            b"+OK\n",
        ];
        for c in cases {
            assert!(scan_all(c).is_err(), "{:?}", c.escape_ascii());
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(scan_all(deep.as_bytes()).is_err());
    }

    #[test]
    fn a_big_command_does_not_pin_its_argument_list() {
        let mut cmd = b"*101\r\n$4\r\nMGET\r\n".to_vec();
        for _ in 0..100 {
            cmd.extend_from_slice(b"$1\r\nk\r\n");
        }
        let mut p = RequestParser::default();
        assert_eq!(p.parse(&cmd, L).unwrap().unwrap().args.len(), 101);
        p.shrink();
        assert_eq!(p.args.capacity(), 0);
    }

    #[test]
    fn integers_cover_all_of_i64() {
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775808"), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"12345678901234567890"), None);
        assert_eq!(
            ReplyScanner::default().scan(b":9223372036854775807\r\n"),
            Ok(Some(22))
        );
    }

    #[test]
    fn inline_arguments_obey_the_bulk_limit() {
        let tight = Limits {
            max_args: 10,
            max_bulk_len: 3,
        };
        let mut p = RequestParser::default();
        assert_eq!(
            p.parse(b"SET k toolong\r\n", tight).err(),
            Some(ProtocolError("invalid bulk length"))
        );
    }

    #[test]
    fn readers_and_writers() {
        assert_eq!(integer(b":17\r\n"), Some(17));
        assert_eq!(integer(b"+17\r\n"), None);
        let r = b"*3\r\n$1\r\na\r\n$-1\r\n$2\r\nbc\r\n";
        let mut items = Vec::new();
        array_items(r, &mut items).unwrap();
        let got: Vec<&[u8]> = items.iter().map(|i| &r[i.clone()]).collect();
        assert_eq!(got, [&b"$1\r\na\r\n"[..], b"$-1\r\n", b"$2\r\nbc\r\n"]);
        assert!(array_items(b"*2\r\n$1\r\na\r\n", &mut items).is_none());
        assert!(array_items(b"-ERR\r\n", &mut items).is_none());
        let mut out = Vec::new();
        write_array_header(&mut out, 2);
        write_bulk(&mut out, b"GET");
        write_integer(&mut out, -7);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n:-7\r\n");
    }
}
