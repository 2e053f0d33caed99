//! memcached ASCII protocol, sans-IO: frames client requests and server replies in a byte
//! buffer and reports them as byte ranges into it.
//!
//! What it does:
//! - [`parse_request`] frames one request at the start of a buffer: its command, key ranges,
//!   `noreply`, data block. `Ok(None)` means "read more"; each call scans at most the current
//!   line (the data block is skipped by its length, never scanned).
//! - [`RequestError`] says what memcached would answer ([`RequestError::reply`]) and whether
//!   the connection can go on ([`RequestError::skip`]).
//! - [`write_retrieval`] rebuilds a multi-key get for the keys one server holds;
//!   [`write_without_noreply`] copies a request less its `noreply`, so the proxy can see the
//!   server's answer and swallow it itself.
//! - [`parse_reply`] frames a server's whole reply; [`parse_reply_piece`] frames one line (or
//!   `VALUE` line with its data) at a time, to stream a large multi-get without re-scanning.
//!
//! What it does not: no I/O, no routing, no buffering; no meta commands (`mg`, `ms`, ...) and
//! no binary protocol; no semantics beyond framing (a proxy does not store anything).
//!
//! Choices, checked against memcached 1.6.18:
//! - A command line may end in `\r\n` or a bare `\n`, as memcached accepts both; a data block
//!   must be followed by `\r\n`, as memcached requires. Server replies must use `\r\n`: a server
//!   that does not is out of step, and the proxy should drop it.
//! - Tokens are separated by spaces only (runs of spaces count as one). A key is 1 to
//!   `max_key_len` bytes; like memcached and twemproxy we take any byte but space, CR and LF
//!   (protocol.txt forbids control characters, but clients such as memaslap send them).
//! - The answers are memcached's: `ERROR` for an unknown command or a wrong argument count,
//!   `CLIENT_ERROR bad command line format` for a bad key or number, and nothing at all when the
//!   line ends in `noreply` and memcached would have kept quiet.
//! - Stricter than memcached: numbers are plain decimal digits (memcached's `strtol` also takes
//!   `+` and spaces), a trailing token that is not `noreply` is refused (memcached ignores it),
//!   `gat <exptime>` without keys is refused (memcached answers `END`).
//! - An error in a storage command closes the connection: the data block that follows cannot be
//!   told apart from commands, and reading client data as commands is how requests get
//!   smuggled. memcached reads on; a proxy should not.

use std::fmt;
use std::ops::Range;

/// Bounds on what one request or reply may hold: anything larger is refused before the proxy
/// has to buffer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes (memcached: 250).
    pub max_key_len: usize,
    /// Largest data block, in bytes (memcached's default item size limit: 1 MiB).
    pub max_value_len: usize,
    /// Most keys in one retrieval command, and most values in one retrieval reply.
    pub max_keys: usize,
    /// Longest line without its line end. A retrieval command line may be longer by
    /// `max_keys * (max_key_len + 1)`: like memcached, a multi-key get is bounded by its keys.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: 250,
            max_value_len: 1024 * 1024,
            max_keys: 1024,
            max_line: 2048,
        }
    }
}

impl Limits {
    fn max_retrieval_line(&self) -> usize {
        let keys = self
            .max_keys
            .saturating_mul(self.max_key_len.saturating_add(1));
        self.max_line.saturating_add(keys)
    }
}

/// A request's command. Names are lower-case and case-sensitive, as in memcached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Version,
    Quit,
    /// Refused by a sharding proxy (see [`Command::is_refused`]).
    FlushAll,
    /// Refused by a sharding proxy.
    Verbosity,
    /// Refused by a sharding proxy, or answered from the proxy's own counters.
    Stats,
}

impl Command {
    fn from_name(name: &[u8]) -> Option<Command> {
        use Command::*;
        Some(match name {
            b"get" => Get,
            b"gets" => Gets,
            b"gat" => Gat,
            b"gats" => Gats,
            b"set" => Set,
            b"add" => Add,
            b"replace" => Replace,
            b"append" => Append,
            b"prepend" => Prepend,
            b"cas" => Cas,
            b"delete" => Delete,
            b"incr" => Incr,
            b"decr" => Decr,
            b"touch" => Touch,
            b"version" => Version,
            b"quit" => Quit,
            b"flush_all" => FlushAll,
            b"verbosity" => Verbosity,
            b"stats" => Stats,
            _ => return None,
        })
    }

    /// The command's name on the wire.
    pub fn name(self) -> &'static str {
        use Command::*;
        match self {
            Get => "get",
            Gets => "gets",
            Gat => "gat",
            Gats => "gats",
            Set => "set",
            Add => "add",
            Replace => "replace",
            Append => "append",
            Prepend => "prepend",
            Cas => "cas",
            Delete => "delete",
            Incr => "incr",
            Decr => "decr",
            Touch => "touch",
            Version => "version",
            Quit => "quit",
            FlushAll => "flush_all",
            Verbosity => "verbosity",
            Stats => "stats",
        }
    }

    /// `get`, `gets`, `gat`, `gats`: one or more keys, answered with values and `END`.
    pub fn is_retrieval(self) -> bool {
        matches!(
            self,
            Command::Get | Command::Gets | Command::Gat | Command::Gats
        )
    }

    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`: a key and a data block.
    pub fn is_storage(self) -> bool {
        use Command::*;
        matches!(self, Set | Add | Replace | Append | Prepend | Cas)
    }

    /// Commands that act on the whole server (`flush_all`, `verbosity`, `stats`): a sharding
    /// proxy cannot forward them to one server, and answering for all would need merging.
    pub fn is_refused(self) -> bool {
        matches!(
            self,
            Command::FlushAll | Command::Verbosity | Command::Stats
        )
    }

    /// How a server's reply to this command is framed; `None` for commands the proxy does not
    /// forward (`quit` and the refused ones).
    pub fn reply_kind(self) -> Option<ReplyKind> {
        if self.is_retrieval() {
            Some(ReplyKind::Retrieval)
        } else if self == Command::Quit || self.is_refused() {
            None
        } else {
            Some(ReplyKind::Line)
        }
    }
}

/// One complete request at the start of the buffer. Ranges index that buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the whole request: command line, line end, and data block with its `\r\n`.
    pub len: usize,
    pub command: Command,
    /// Keys in order: one for single-key commands, one or more for retrievals, none otherwise.
    pub keys: Vec<Range<usize>>,
    /// The client asked for no reply (storage, `delete`, `incr`, `decr`, `touch`, `flush_all`,
    /// `verbosity`).
    pub noreply: bool,
    /// A storage command's data block, without the `\r\n` after it.
    pub data: Option<Range<usize>>,
    /// The exptime argument of `gat`, `gats`, `touch` and storage commands.
    pub exptime: Option<Range<usize>>,
}

impl Request {
    fn new(command: Command, len: usize) -> Request {
        Request {
            len,
            command,
            keys: Vec::new(),
            noreply: false,
            data: None,
            exptime: None,
        }
    }
}

/// What went wrong with a request, for logs and counters; [`RequestError::reply`] is the answer.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestErrorKind {
    /// Not a command memcached knows (or an empty line).
    UnknownCommand,
    /// A known command with too few or too many arguments.
    WrongArity,
    /// A malformed number, key or trailing token.
    BadFormat,
    /// A key longer than [`Limits::max_key_len`].
    KeyTooLong,
    /// A retrieval with more than [`Limits::max_keys`] keys.
    TooManyKeys,
    /// `touch`, `gat` or `gats` with an exptime that is not a number.
    InvalidExptime,
    /// `incr` or `decr` with a delta that is not an unsigned 64-bit number.
    InvalidDelta,
    /// No line end within [`Limits::max_line`] bytes.
    LineTooLong,
    /// A data block larger than [`Limits::max_value_len`].
    ValueTooLarge,
    /// A data block not followed by `\r\n`.
    BadDataChunk,
    /// `ms`, the meta set: it carries a data block this codec does not frame.
    Unsupported,
}

/// A request the proxy must answer itself, and how to carry on after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    kind: RequestErrorKind,
    skip: Option<usize>,
    noreply: bool,
}

impl RequestError {
    fn new(kind: RequestErrorKind, skip: Option<usize>, noreply: bool) -> Self {
        RequestError {
            kind,
            skip,
            noreply,
        }
    }

    pub fn kind(&self) -> RequestErrorKind {
        self.kind
    }

    /// Bytes to drop to reach the next request, or `None` when the stream cannot be
    /// resynchronised: send [`reply`](Self::reply), then close.
    pub fn skip(&self) -> Option<usize> {
        self.skip
    }

    /// The bytes to send back: memcached's answer, or nothing when the client said `noreply`
    /// and memcached would have stayed quiet.
    pub fn reply(&self) -> &'static [u8] {
        use RequestErrorKind::*;
        if self.noreply {
            return b"";
        }
        match self.kind {
            UnknownCommand | WrongArity => b"ERROR\r\n",
            BadFormat | KeyTooLong => b"CLIENT_ERROR bad command line format\r\n",
            TooManyKeys => b"CLIENT_ERROR too many keys\r\n",
            InvalidExptime => b"CLIENT_ERROR invalid exptime argument\r\n",
            InvalidDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            LineTooLong => b"CLIENT_ERROR line too long\r\n",
            ValueTooLarge => b"SERVER_ERROR object too large for cache\r\n",
            BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            Unsupported => b"SERVER_ERROR command not supported by proxy\r\n",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let then = if self.skip.is_some() {
            "line skipped"
        } else {
            "closing"
        };
        write!(f, "memcache request: {:?} ({then})", self.kind)
    }
}

impl std::error::Error for RequestError {}

/// Frames the request at the start of `buf`. `Ok(None)`: incomplete, call again with more bytes.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<Request>, RequestError> {
    parse_request_reusing(buf, limits, Vec::new())
}

/// [`parse_request`], with `keys` (cleared first) as the request's key list, so that a
/// connection can hand back the list of its previous request instead of allocating one per
/// request.
pub fn parse_request_reusing(
    buf: &[u8],
    limits: &Limits,
    mut keys: Vec<Range<usize>>,
) -> Result<Option<Request>, RequestError> {
    keys.clear();
    let fatal = |kind| RequestError::new(kind, None, false);
    let line = match find_line(buf, request_line_cap(buf, limits)) {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(None),
        Err(TooLong) => return Err(fatal(RequestErrorKind::LineTooLong)),
    };
    let mut tokens = Tokens::new(&buf[..line.end]);
    let name = tokens.next().map_or(&b""[..], |name| &buf[name]);
    let Some(command) = Command::from_name(name) else {
        if name == b"ms" {
            return Err(fatal(RequestErrorKind::Unsupported));
        }
        let unknown = RequestErrorKind::UnknownCommand;
        return Err(RequestError::new(unknown, Some(line.next), false));
    };
    let p = LineParser {
        buf,
        line,
        limits,
        command,
        keys: std::cell::Cell::new(keys),
    };
    if command.is_retrieval() {
        return p.retrieval(tokens).map(Some);
    }
    if matches!(command, Command::Quit | Command::Stats | Command::Version) {
        return Ok(Some(Request::new(command, line.next)));
    }
    let Some(args) = Args::collect(buf, tokens) else {
        return Err(p.error(RequestErrorKind::WrongArity, false));
    };
    match command {
        Command::Delete => p.delete(&args).map(Some),
        Command::Incr | Command::Decr => p.arithmetic(&args).map(Some),
        Command::Touch => p.touch(&args).map(Some),
        Command::FlushAll | Command::Verbosity => p.admin(&args).map(Some),
        c if c.is_storage() => p.storage(&args),
        _ => Err(p.error(RequestErrorKind::WrongArity, false)),
    }
}

/// A complete line: its content is `..end`, the next thing starts at `next`.
#[derive(Clone, Copy, Debug)]
struct Line {
    end: usize,
    next: usize,
}

struct TooLong;

/// Finds the line at the start of `buf` if its content is at most `cap` bytes; `Ok(None)` while
/// it may still end in time. The line end is `\n`, with the `\r` before it if any.
fn find_line(buf: &[u8], cap: usize) -> Result<Option<Line>, TooLong> {
    let window = &buf[..buf.len().min(cap.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            let end = if nl > 0 && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end > cap {
                return Err(TooLong);
            }
            Ok(Some(Line { end, next: nl + 1 }))
        }
        None if window.len() == cap.saturating_add(2) => Err(TooLong),
        None => Ok(None),
    }
}

/// The longest command line allowed for what `buf` starts with: longer for a retrieval, whose
/// name shows in the first `max_line` bytes (memcached does the same for multi-key gets).
fn request_line_cap(buf: &[u8], limits: &Limits) -> usize {
    let head = &buf[..buf.len().min(limits.max_line)];
    if let Some(name) = Tokens::new(head).next() {
        let retrieval = Command::from_name(&head[name.clone()]).is_some_and(Command::is_retrieval);
        if retrieval && head.get(name.end) == Some(&b' ') {
            return limits.max_retrieval_line();
        }
    }
    limits.max_line
}

/// Space-separated tokens of a line, as ranges into it.
#[derive(Clone)]
struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Self {
        Tokens { line, pos: 0 }
    }
}

impl Iterator for Tokens<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let rest = self.line.get(self.pos..)?;
        let start = self.pos + rest.iter().position(|&b| b != b' ')?;
        let len = self.line[start..].iter().position(|&b| b == b' ');
        self.pos = len.map_or(self.line.len(), |n| start + n);
        Some(start..self.pos)
    }
}

/// The arguments of a non-retrieval command: at most `cas`'s six.
struct Args<'a> {
    buf: &'a [u8],
    items: [Range<usize>; Args::MAX],
    len: usize,
}

impl<'a> Args<'a> {
    const MAX: usize = 6;

    /// `None` when there are more than [`Args::MAX`].
    fn collect(buf: &'a [u8], tokens: Tokens<'_>) -> Option<Args<'a>> {
        let mut args = Args {
            buf,
            items: std::array::from_fn(|_| 0..0),
            len: 0,
        };
        for token in tokens {
            *args.items.get_mut(args.len)? = token;
            args.len += 1;
        }
        Some(args)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn range(&self, i: usize) -> Range<usize> {
        self.items[i].clone()
    }

    fn get(&self, i: usize) -> &'a [u8] {
        &self.buf[self.range(i)]
    }

    /// The last of more than `required` arguments is `noreply`.
    fn noreply_after(&self, required: usize) -> bool {
        self.len > required && self.get(self.len - 1) == b"noreply"
    }
}

/// Parses the arguments of one complete command line.
struct LineParser<'a> {
    buf: &'a [u8],
    line: Line,
    limits: &'a Limits,
    command: Command,
    /// The key list the request gets (a recycled one, see [`parse_request_reusing`]).
    keys: std::cell::Cell<Vec<Range<usize>>>,
}

impl LineParser<'_> {
    /// An error in this line: the connection goes on past it, unless a data block may follow.
    /// A request, with the key list handed in by the caller.
    fn request(&self, command: Command, len: usize) -> Request {
        Request {
            keys: self.keys.take(),
            ..Request::new(command, len)
        }
    }

    fn error(&self, kind: RequestErrorKind, noreply: bool) -> RequestError {
        let skip = (!self.command.is_storage()).then_some(self.line.next);
        RequestError::new(kind, skip, noreply)
    }

    fn key(&self, key: Range<usize>) -> Result<Range<usize>, RequestErrorKind> {
        check_key(&self.buf[key.clone()], self.limits)?;
        Ok(key)
    }

    fn retrieval(&self, mut tokens: Tokens) -> Result<Request, RequestError> {
        let mut req = self.request(self.command, self.line.next);
        if matches!(self.command, Command::Gat | Command::Gats) {
            let Some(exptime) = tokens.next() else {
                return Err(self.error(RequestErrorKind::WrongArity, false));
            };
            if !is_exptime(&self.buf[exptime.clone()]) {
                return Err(self.error(RequestErrorKind::InvalidExptime, false));
            }
            req.exptime = Some(exptime);
        }
        for key in tokens {
            if req.keys.len() == self.limits.max_keys {
                return Err(self.error(RequestErrorKind::TooManyKeys, false));
            }
            let key = self.key(key).map_err(|kind| self.error(kind, false))?;
            req.keys.push(key);
        }
        if req.keys.is_empty() {
            return Err(self.error(RequestErrorKind::WrongArity, false));
        }
        Ok(req)
    }

    /// `<cmd> <key> <flags> <exptime> <bytes> [<cas unique>] [noreply]` and the data block.
    fn storage(&self, args: &Args) -> Result<Option<Request>, RequestError> {
        let command = self.command;
        let required = if command == Command::Cas { 5 } else { 4 };
        if args.len() < required || args.len() > required + 1 {
            return Err(self.error(RequestErrorKind::WrongArity, false));
        }
        // As memcached: a last `noreply` silences errors even where it takes a number's place.
        let noreply = args.noreply_after(required - 1);
        let err = |kind| self.error(kind, noreply);
        if args.len() > required && !noreply {
            return Err(err(RequestErrorKind::BadFormat));
        }
        let key = self.key(args.range(0)).map_err(err)?;
        // Flags take 64 bits: memcached keeps the low 32 of a larger number rather than refuse it.
        let numbers_ok = parse_u64(args.get(1)).is_some()
            && is_exptime(args.get(2))
            && (command != Command::Cas || parse_u64(args.get(4)).is_some());
        let vlen = parse_u64(args.get(3)).filter(|&n| n <= i32::MAX as u64);
        let (true, Some(vlen)) = (numbers_ok, vlen) else {
            return Err(err(RequestErrorKind::BadFormat));
        };
        let vlen = usize::try_from(vlen)
            .ok()
            .filter(|&n| n <= self.limits.max_value_len)
            .ok_or(err(RequestErrorKind::ValueTooLarge))?;
        let data = match data_block(self.buf, self.line.next, vlen) {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            Err(BadChunk) => return Err(err(RequestErrorKind::BadDataChunk)),
        };
        let mut req = self.request(command, data.end + 2);
        req.keys.push(key);
        req.noreply = noreply;
        req.exptime = Some(args.range(2));
        req.data = Some(data);
        Ok(Some(req))
    }

    /// `delete <key> [0] [noreply]`: memcached still takes the legacy hold time if it is 0.
    fn delete(&self, args: &Args) -> Result<Request, RequestError> {
        if args.len() == 0 || args.len() > 3 {
            return Err(self.error(RequestErrorKind::WrongArity, false));
        }
        let noreply = args.noreply_after(1);
        let hold_zero = args.len() > 1 && args.get(1) == b"0";
        let valid = match args.len() {
            1 => true,
            2 => hold_zero || noreply,
            _ => hold_zero && noreply,
        };
        if !valid {
            return Err(self.error(RequestErrorKind::BadFormat, noreply));
        }
        self.keyed(args, noreply, None)
    }

    /// `incr|decr <key> <delta> [noreply]`.
    fn arithmetic(&self, args: &Args) -> Result<Request, RequestError> {
        let noreply = self.two_args_and_noreply(args)?;
        if parse_u64(args.get(1)).is_none() {
            return Err(self.error(RequestErrorKind::InvalidDelta, noreply));
        }
        self.keyed(args, noreply, None)
    }

    /// `touch <key> <exptime> [noreply]`.
    fn touch(&self, args: &Args) -> Result<Request, RequestError> {
        let noreply = self.two_args_and_noreply(args)?;
        if !is_exptime(args.get(1)) {
            return Err(self.error(RequestErrorKind::InvalidExptime, noreply));
        }
        self.keyed(args, noreply, Some(args.range(1)))
    }

    /// Checks `<key> <arg> [noreply]` and says whether `noreply` is there.
    fn two_args_and_noreply(&self, args: &Args) -> Result<bool, RequestError> {
        if args.len() < 2 || args.len() > 3 {
            return Err(self.error(RequestErrorKind::WrongArity, false));
        }
        let noreply = args.noreply_after(2);
        if args.len() == 3 && !noreply {
            return Err(self.error(RequestErrorKind::BadFormat, false));
        }
        Ok(noreply)
    }

    /// A request for the key in the first argument, whose other arguments were checked.
    fn keyed(
        &self,
        args: &Args,
        noreply: bool,
        exptime: Option<Range<usize>>,
    ) -> Result<Request, RequestError> {
        let key = self
            .key(args.range(0))
            .map_err(|kind| self.error(kind, noreply))?;
        let mut req = self.request(self.command, self.line.next);
        req.keys.push(key);
        req.noreply = noreply;
        req.exptime = exptime;
        Ok(req)
    }

    /// `flush_all [delay] [noreply]` and `verbosity <level> [noreply]`, framed to be refused.
    fn admin(&self, args: &Args) -> Result<Request, RequestError> {
        let command = self.command;
        let (min, max) = if command == Command::FlushAll {
            (0, 2)
        } else {
            (1, 2)
        };
        if args.len() < min || args.len() > max {
            return Err(self.error(RequestErrorKind::WrongArity, false));
        }
        let noreply = args.noreply_after(min);
        let plain = args.len() - usize::from(noreply);
        if plain > 1 {
            return Err(self.error(RequestErrorKind::BadFormat, noreply));
        }
        if command == Command::FlushAll && plain == 1 && !is_exptime(args.get(0)) {
            return Err(self.error(RequestErrorKind::InvalidExptime, noreply));
        }
        let mut req = self.request(command, self.line.next);
        req.noreply = noreply;
        Ok(req)
    }
}

/// A key: 1 to `max_key_len` bytes, none of them a space, CR or LF.
fn check_key(key: &[u8], limits: &Limits) -> Result<(), RequestErrorKind> {
    if key.len() > limits.max_key_len {
        return Err(RequestErrorKind::KeyTooLong);
    }
    if key.is_empty() || key.iter().any(|&b| matches!(b, b' ' | b'\r' | b'\n')) {
        return Err(RequestErrorKind::BadFormat);
    }
    Ok(())
}

/// Decimal digits only (memcached's `strtoull` also takes a sign and spaces; clients send none).
fn parse_u64(token: &[u8]) -> Option<u64> {
    if token.is_empty() {
        return None;
    }
    token.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|&d| d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// An exptime: digits with an optional `-`, within 64 bits (memcached 1.6 takes any `long`, so
/// absolute times past 2038 work).
fn is_exptime(token: &[u8]) -> bool {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    parse_u64(digits).is_some_and(|n| i64::try_from(n).is_ok())
}

struct BadChunk;

/// The data block of `len` bytes at `start`, which must be followed by `\r\n`; `Ok(None)` until
/// all of it is there. A wrong byte where `\r\n` belongs is reported as soon as it arrives.
fn data_block(buf: &[u8], start: usize, len: usize) -> Result<Option<Range<usize>>, BadChunk> {
    let end = start.checked_add(len).ok_or(BadChunk)?;
    let tail = buf.get(end..).unwrap_or_default();
    let expected = b"\r\n";
    let got = &tail[..tail.len().min(2)];
    if got != &expected[..got.len()] {
        return Err(BadChunk);
    }
    Ok((got.len() == 2).then_some(start..end))
}

/// Writes the retrieval command of `req` for some of its keys (indices into `req.keys`), such as
/// `get k1 k3\r\n` or `gat 300 k2\r\n`. Writes nothing if `req` is not a retrieval or no index
/// is valid. `buf` is the buffer `req` was parsed from.
pub fn write_retrieval(
    buf: &[u8],
    req: &Request,
    keys: impl IntoIterator<Item = usize>,
    out: &mut Vec<u8>,
) {
    if !req.command.is_retrieval() {
        return;
    }
    let start = out.len();
    out.extend_from_slice(req.command.name().as_bytes());
    if let Some(exptime) = req.exptime.clone().and_then(|r| buf.get(r)) {
        out.push(b' ');
        out.extend_from_slice(exptime);
    }
    let mut written = 0;
    for key in keys
        .into_iter()
        .filter_map(|i| buf.get(req.keys.get(i)?.clone()))
    {
        out.push(b' ');
        out.extend_from_slice(key);
        written += 1;
    }
    if written == 0 {
        out.truncate(start);
        return;
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `req` as received, less its `noreply` token when it has one, so that the server
/// answers and the proxy can swallow the answer. The rewritten line ends in `\r\n`.
/// `buf` is the buffer `req` was parsed from.
pub fn write_without_noreply(buf: &[u8], req: &Request, out: &mut Vec<u8>) {
    let Some(whole) = buf.get(..req.len) else {
        return;
    };
    if !req.noreply {
        out.extend_from_slice(whole);
        return;
    }
    let line_end = req.data.as_ref().map_or(req.len, |d| d.start);
    let Some((line, data)) = whole.split_at_checked(line_end) else {
        return;
    };
    let line = trim_spaces_end(trim_line_end(line));
    let line = trim_spaces_end(line.strip_suffix(b"noreply").unwrap_or(line));
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_spaces_end(mut line: &[u8]) -> &[u8] {
    while let Some(rest) = line.strip_suffix(b" ") {
        line = rest;
    }
    line
}

/// How a server's reply is framed, from the command it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// `VALUE` items then `END` (`get`, `gets`, `gat`, `gats`).
    Retrieval,
    /// One line: `STORED`, `DELETED`, `TOUCHED`, a number, `VERSION ...`, `OK` and the like.
    Line,
}

/// One item of a retrieval reply. Ranges index the buffer given to the parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub key: Range<usize>,
    /// The data, without the `\r\n` after it.
    pub data: Range<usize>,
    /// The whole item: `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
    pub block: Range<usize>,
}

impl Value {
    fn shifted(self, by: usize) -> Value {
        let shift = |r: Range<usize>| r.start + by..r.end + by;
        Value {
            key: shift(self.key),
            data: shift(self.data),
            block: shift(self.block),
        }
    }
}

/// A server's complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the whole reply, up to and including `END\r\n` or its single line.
    pub len: usize,
    /// The items of a retrieval reply, in order.
    pub values: Vec<Value>,
    /// The reply is (or, for a retrieval, ends with) `ERROR`, `CLIENT_ERROR` or `SERVER_ERROR`.
    pub is_error: bool,
}

/// One piece of a server's reply, each with its length in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A `VALUE` line and its data block (its length is `block.end`).
    Value(Value),
    /// `END`: the retrieval reply is complete.
    End(usize),
    /// The single line answering a [`ReplyKind::Line`] command.
    Status(usize),
    /// `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`: the reply is complete.
    Error(usize),
}

impl Piece {
    /// Bytes of the piece on the wire; never zero.
    #[allow(clippy::len_without_is_empty, reason = "a piece always holds a line")]
    pub fn len(&self) -> usize {
        match self {
            Piece::Value(v) => v.block.end,
            Piece::End(n) | Piece::Status(n) | Piece::Error(n) => *n,
        }
    }

    /// Whether this piece ends the reply.
    pub fn is_last(&self) -> bool {
        !matches!(self, Piece::Value(_))
    }
}

/// A server reply the proxy cannot frame: the server connection is out of step and must close.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// No `\r\n` within [`Limits::max_line`] bytes.
    LineTooLong,
    /// A line that does not belong in this kind of reply, or a bare `\n` line end.
    Malformed,
    /// A value larger than [`Limits::max_value_len`].
    ValueTooLarge,
    /// More than [`Limits::max_keys`] values.
    TooManyValues,
    /// A data block not followed by `\r\n`.
    BadDataChunk,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memcache reply: {self:?}")
    }
}

impl std::error::Error for ReplyError {}

/// Frames a server's whole reply at the start of `buf`. `Ok(None)`: incomplete. Each call
/// re-reads the `VALUE` lines already there (not their data); to stream a large reply, use
/// [`parse_reply_piece`].
pub fn parse_reply(
    buf: &[u8],
    kind: ReplyKind,
    limits: &Limits,
) -> Result<Option<Reply>, ReplyError> {
    let mut values = Vec::new();
    let mut at = 0;
    loop {
        let Some(piece) = parse_reply_piece(&buf[at..], kind, limits)? else {
            return Ok(None);
        };
        let len = at + piece.len();
        let is_error = match piece {
            Piece::Value(value) => {
                if values.len() == limits.max_keys {
                    return Err(ReplyError::TooManyValues);
                }
                values.push(value.shifted(at));
                at = len;
                continue;
            }
            Piece::End(_) | Piece::Status(_) => false,
            Piece::Error(_) => true,
        };
        return Ok(Some(Reply {
            len,
            values,
            is_error,
        }));
    }
}

/// Frames the next piece of a server's reply at the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_reply_piece(
    buf: &[u8],
    kind: ReplyKind,
    limits: &Limits,
) -> Result<Option<Piece>, ReplyError> {
    let line = match find_line(buf, limits.max_line) {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(None),
        Err(TooLong) => return Err(ReplyError::LineTooLong),
    };
    if line.next - line.end != 2 {
        return Err(ReplyError::Malformed);
    }
    let mut tokens = Tokens::new(&buf[..line.end]);
    let first = match tokens.next() {
        Some(first) if first.start == 0 => &buf[first],
        _ => return Err(ReplyError::Malformed),
    };
    let alone = tokens.clone().next().is_none();
    match (kind, first) {
        (_, b"ERROR" | b"CLIENT_ERROR" | b"SERVER_ERROR") => Ok(Some(Piece::Error(line.next))),
        (ReplyKind::Retrieval, b"END") if alone => Ok(Some(Piece::End(line.next))),
        (ReplyKind::Retrieval, b"VALUE") => value(buf, line, tokens, limits),
        (ReplyKind::Line, b"VERSION") => Ok(Some(Piece::Status(line.next))),
        (ReplyKind::Line, status) if alone && is_status(status) => {
            Ok(Some(Piece::Status(line.next)))
        }
        _ => Err(ReplyError::Malformed),
    }
}

/// A one-word status line, or the number `incr`/`decr` answer with.
fn is_status(word: &[u8]) -> bool {
    matches!(
        word,
        b"STORED" | b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" | b"DELETED" | b"TOUCHED" | b"OK"
    ) || parse_u64(word).is_some()
}

/// `VALUE <key> <flags> <bytes> [<cas unique>]\r\n<data>\r\n`, after its first token.
fn value(
    buf: &[u8],
    line: Line,
    mut tokens: Tokens,
    limits: &Limits,
) -> Result<Option<Piece>, ReplyError> {
    let mut next = || tokens.next().map(|r| (r.clone(), &buf[r]));
    let (Some((key, key_bytes)), Some((_, flags)), Some((_, bytes))) = (next(), next(), next())
    else {
        return Err(ReplyError::Malformed);
    };
    let cas_ok = next().is_none_or(|(_, cas)| parse_u64(cas).is_some());
    let flags_ok = parse_u64(flags).is_some();
    if !cas_ok || !flags_ok || next().is_some() || check_key(key_bytes, limits).is_err() {
        return Err(ReplyError::Malformed);
    }
    let vlen = parse_u64(bytes).ok_or(ReplyError::Malformed)?;
    let vlen = usize::try_from(vlen)
        .ok()
        .filter(|&n| n <= limits.max_value_len)
        .ok_or(ReplyError::ValueTooLarge)?;
    let data = match data_block(buf, line.next, vlen) {
        Ok(Some(data)) => data,
        Ok(None) => return Ok(None),
        Err(BadChunk) => return Err(ReplyError::BadDataChunk),
    };
    let block = 0..data.end + 2;
    Ok(Some(Piece::Value(Value { key, data, block })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;
    use RequestErrorKind as K;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(input: &[u8]) -> Request {
        match parse_request(input, &limits()) {
            Ok(Some(req)) => req,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn error(input: &[u8]) -> RequestError {
        match parse_request(input, &limits()) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn text(buf: &[u8], r: &Range<usize>) -> String {
        String::from_utf8_lossy(&buf[r.clone()]).into_owned()
    }

    /// (input, command, keys, noreply, exptime, data)
    type Golden = (
        &'static [u8],
        Command,
        &'static [&'static str],
        bool,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[rustfmt::skip]
    const REQUESTS: &[Golden] = &[
        (b"get foo\r\n", Get, &["foo"], false, None, None),
        (b"get foo\n", Get, &["foo"], false, None, None),
        (b"  get  a   b \r\n", Get, &["a", "b"], false, None, None),
        (b"gets a bb ccc\r\n", Gets, &["a", "bb", "ccc"], false, None, None),
        (b"gat 100 k1 k2\r\n", Gat, &["k1", "k2"], false, Some("100"), None),
        (b"gats -1 k\r\n", Gats, &["k"], false, Some("-1"), None),
        (b"set k 0 0 5\r\nhello\r\n", Set, &["k"], false, Some("0"), Some("hello")),
        (b"set k 0 0 5\nhello\r\n", Set, &["k"], false, Some("0"), Some("hello")),
        (b"set k 0 0 0\r\n\r\n", Set, &["k"], false, Some("0"), Some("")),
        (b"set k 7 -1 4\r\n\r\n\r\n\r\n", Set, &["k"], false, Some("-1"), Some("\r\n\r\n")),
        (b"add k 4294967295 60 1 noreply\r\nx\r\n", Add, &["k"], true, Some("60"), Some("x")),
        (b"replace k 1 2 3\r\nabc\r\n", Replace, &["k"], false, Some("2"), Some("abc")),
        (b"append k 0 0 2\r\nab\r\n", Append, &["k"], false, Some("0"), Some("ab")),
        (b"prepend k 0 0 2 noreply \r\nab\r\n", Prepend, &["k"], true, Some("0"), Some("ab")),
        (b"cas k 1 0 3 18446744073709551615\r\nabc\r\n", Cas, &["k"], false, Some("0"), Some("abc")),
        (b"cas k 1 0 3 12345 noreply\r\nabc\r\n", Cas, &["k"], true, Some("0"), Some("abc")),
        (b"delete k\r\n", Delete, &["k"], false, None, None),
        (b"delete k 0\r\n", Delete, &["k"], false, None, None),
        (b"delete k noreply\r\n", Delete, &["k"], true, None, None),
        (b"delete k 0 noreply\r\n", Delete, &["k"], true, None, None),
        (b"incr k 18446744073709551615\r\n", Incr, &["k"], false, None, None),
        (b"decr k 1 noreply\r\n", Decr, &["k"], true, None, None),
        (b"touch k 300\r\n", Touch, &["k"], false, Some("300"), None),
        (b"touch k -1 noreply\n", Touch, &["k"], true, Some("-1"), None),
        (b"version\r\n", Version, &[], false, None, None),
        (b"version please\r\n", Version, &[], false, None, None),
        (b"set k 4294967296 2147483648 0\r\n\r\n", Set, &["k"], false, Some("2147483648"), Some("")),
        (b"quit\r\n", Quit, &[], false, None, None),
        (b"quit now\r\n", Quit, &[], false, None, None),
        (b"flush_all\r\n", FlushAll, &[], false, None, None),
        (b"flush_all 10 noreply\r\n", FlushAll, &[], true, None, None),
        (b"flush_all noreply\r\n", FlushAll, &[], true, None, None),
        (b"verbosity 1\r\n", Verbosity, &[], false, None, None),
        (b"verbosity 1 noreply\r\n", Verbosity, &[], true, None, None),
        (b"stats\r\n", Stats, &[], false, None, None),
        (b"stats slabs\r\n", Stats, &[], false, None, None),
    ];

    #[test]
    fn a_reused_key_list_is_cleared_and_kept() {
        let mut keys = Vec::with_capacity(8);
        keys.push(0..1);
        let ptr = keys.as_ptr();
        let req = parse_request_reusing(b"get a b\r\n", &Limits::default(), keys)
            .unwrap()
            .unwrap();
        assert_eq!(req.keys, vec![4..5, 6..7]);
        assert_eq!(req.keys.as_ptr(), ptr, "no new allocation");
    }

    #[test]
    fn keys_may_hold_control_bytes_as_in_memcached() {
        // memaslap's keys start with bytes 0x10-0x1f; memcached and twemproxy take them.
        let input = b"get \x10a\x01b\tc d\r\n";
        let req = parse(input);
        assert_eq!(&input[req.keys[0].clone()], b"\x10a\x01b\tc");
        assert_eq!(&input[req.keys[1].clone()], b"d");
    }

    #[test]
    fn golden_requests() {
        for &(input, command, keys, noreply, exptime, data) in REQUESTS {
            let req = parse(input);
            let name = String::from_utf8_lossy(input);
            assert_eq!(req.len, input.len(), "{name:?}");
            assert_eq!(req.command, command, "{name:?}");
            let got: Vec<String> = req.keys.iter().map(|k| text(input, k)).collect();
            assert_eq!(got, keys, "{name:?}");
            assert_eq!(req.noreply, noreply, "{name:?}");
            assert_eq!(
                req.exptime.as_ref().map(|r| text(input, r)).as_deref(),
                exptime,
                "{name:?}"
            );
            assert_eq!(
                req.data.as_ref().map(|r| text(input, r)).as_deref(),
                data,
                "{name:?}"
            );
        }
    }

    #[test]
    fn exact_ranges() {
        let req = parse(b"set k 0 0 5\r\nhello\r\n");
        assert_eq!((req.keys.len(), &req.keys[0]), (1, &(4..5)));
        assert_eq!((req.exptime, req.data), (Some(8..9), Some(13..18)));
        let req = parse(b"gat 100 k1 k2\r\n");
        assert_eq!(
            (req.keys, req.exptime, req.len),
            (vec![8..10, 11..13], Some(4..7), 15)
        );
        let req = parse(b"get foo\n");
        assert_eq!((req.keys.len(), &req.keys[0], req.len), (1, &(4..7), 8));
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for &(input, ..) in REQUESTS {
            for n in 0..input.len() {
                let got = parse_request(&input[..n], &limits());
                assert_eq!(
                    got,
                    Ok(None),
                    "{:?} cut at {n}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn pipelined_requests_are_consumed_one_by_one() {
        let all: Vec<u8> = REQUESTS.iter().flat_map(|g| g.0.iter().copied()).collect();
        let mut at = 0;
        for &(input, command, ..) in REQUESTS {
            let req = parse(&all[at..]);
            assert_eq!((req.command, req.len), (command, input.len()));
            at += req.len;
        }
        assert_eq!(at, all.len());
    }

    #[test]
    fn trailing_bytes_do_not_change_the_frame() {
        for &(input, ..) in REQUESTS {
            let mut longer = input.to_vec();
            longer.extend_from_slice(b"get next\r\n");
            assert_eq!(parse(&longer), parse(input));
        }
    }

    #[rustfmt::skip]
    const LINE_ERRORS: &[(&[u8], RequestErrorKind, &[u8])] = &[
        (b"\r\n", K::UnknownCommand, b"ERROR\r\n"),
        (b"   \n", K::UnknownCommand, b"ERROR\r\n"),
        (b"foo bar\r\n", K::UnknownCommand, b"ERROR\r\n"),
        (b"GET a\r\n", K::UnknownCommand, b"ERROR\r\n"),
        (b"mg a v\r\n", K::UnknownCommand, b"ERROR\r\n"),
        (b"foo noreply\r\n", K::UnknownCommand, b"ERROR\r\n"),
        (b"get\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"get \r\n", K::WrongArity, b"ERROR\r\n"),
        (b"gat\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"gat 10\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"delete\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"delete a 0 noreply x\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"incr a\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"touch a 1 noreply x\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"verbosity\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"flush_all 1 noreply x\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"get a\r\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"delete a 5\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"incr a 1 2\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"flush_all x\r\n", K::InvalidExptime, b"CLIENT_ERROR invalid exptime argument\r\n"),
        (b"verbosity 1 2\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"incr a x\r\n", K::InvalidDelta, b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"incr a -1\r\n", K::InvalidDelta, b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"decr a 18446744073709551616\r\n", K::InvalidDelta, b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        (b"touch a x\r\n", K::InvalidExptime, b"CLIENT_ERROR invalid exptime argument\r\n"),
        (b"gat x a\r\n", K::InvalidExptime, b"CLIENT_ERROR invalid exptime argument\r\n"),
        (b"gats 9223372036854775808 a\r\n", K::InvalidExptime, b"CLIENT_ERROR invalid exptime argument\r\n"),
    ];

    #[test]
    fn line_errors_skip_the_line() {
        for &(input, kind, reply) in LINE_ERRORS {
            let e = error(input);
            let name = String::from_utf8_lossy(input);
            assert_eq!(
                (e.kind(), e.reply(), e.skip()),
                (kind, reply, Some(input.len())),
                "{name:?}"
            );
            for n in 0..input.len() {
                assert_eq!(
                    parse_request(&input[..n], &limits()),
                    Ok(None),
                    "{name:?} cut at {n}"
                );
            }
            let mut next = input[e.skip().unwrap_or(0)..].to_vec();
            next.extend_from_slice(b"get a\r\n");
            assert_eq!(parse(&next).command, Get);
        }
    }

    #[test]
    fn key_length() {
        let ok = format!("get {}\r\n", "k".repeat(250));
        assert_eq!(parse(ok.as_bytes()).keys, vec![4..254]);
        let long = format!("get a {}\r\n", "k".repeat(251));
        let e = error(long.as_bytes());
        assert_eq!((e.kind(), e.skip()), (K::KeyTooLong, Some(long.len())));
        assert_eq!(e.reply(), b"CLIENT_ERROR bad command line format\r\n");
        let long = format!("delete {} noreply\r\n", "k".repeat(251));
        assert_eq!(error(long.as_bytes()).reply(), b"", "noreply silences it");
    }

    #[rustfmt::skip]
    const STORAGE_ERRORS: &[(&[u8], RequestErrorKind, &[u8])] = &[
        (b"set a 0 0\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"cas a 0 0 1\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"set a 0 0 1 noreply x y z\r\n", K::WrongArity, b"ERROR\r\n"),
        (b"set a 0 0 1 foo\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a -1 0 1\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a 18446744073709551616 0 1\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a 0 x 1\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a 0 0 -1\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a 0 0 +1\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a 0 0 2147483648\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"cas a 0 0 1 x\r\n", K::BadFormat, b"CLIENT_ERROR bad command line format\r\n"),
        (b"set a 0 0 1048577\r\n", K::ValueTooLarge, b"SERVER_ERROR object too large for cache\r\n"),
        (b"set a 0 0 1\r\nxy\r\n", K::BadDataChunk, b"CLIENT_ERROR bad data chunk\r\n"),
        (b"set a 0 0 1\r\nx\n", K::BadDataChunk, b"CLIENT_ERROR bad data chunk\r\n"),
        (b"set a 0 0 1\r\nx\rx", K::BadDataChunk, b"CLIENT_ERROR bad data chunk\r\n"),
        (b"ms a 1\r\n", K::Unsupported, b"SERVER_ERROR command not supported by proxy\r\n"),
    ];

    #[test]
    fn storage_errors_close() {
        for &(input, kind, reply) in STORAGE_ERRORS {
            let e = error(input);
            let name = String::from_utf8_lossy(input);
            assert_eq!(
                (e.kind(), e.reply(), e.skip()),
                (kind, reply, None),
                "{name:?}"
            );
        }
        let long = format!("set {} 0 0 1\r\n", "k".repeat(251));
        assert_eq!(
            (error(long.as_bytes()).kind(), error(long.as_bytes()).skip()),
            (K::KeyTooLong, None)
        );
    }

    #[test]
    fn bad_chunk_is_reported_as_soon_as_its_byte_arrives() {
        assert_eq!(error(b"set a 0 0 1\r\nxy").kind(), K::BadDataChunk);
        assert_eq!(parse_request(b"set a 0 0 1\r\nx", &limits()), Ok(None));
        assert_eq!(parse_request(b"set a 0 0 1\r\nx\r", &limits()), Ok(None));
    }

    #[test]
    fn noreply_silences_errors_as_memcached_does() {
        for input in [
            &b"set a -1 0 1 noreply\r\n"[..],
            b"set a 0 0 1 noreply\r\nxy\r\n",
            b"cas a 0 0 1 noreply\r\n",
            b"incr a x noreply\r\n",
            b"touch a x noreply\r\n",
            b"delete a 5 noreply\r\n",
            b"set a 0 0 9999999 noreply\r\n",
        ] {
            assert_eq!(
                error(input).reply(),
                b"",
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // A wrong argument count is answered before memcached looks for `noreply`.
        assert_eq!(error(b"set a noreply\r\n").reply(), b"ERROR\r\n");
        // A key named noreply is a key.
        let req = parse(b"delete noreply\r\n");
        assert_eq!(
            (req.noreply, req.keys.len(), &req.keys[0]),
            (false, 1, &(7..14))
        );
        let req = parse(b"get noreply\r\n");
        assert_eq!((req.noreply, req.keys.len()), (false, 1));
    }

    #[test]
    fn write_without_noreply_strips_the_token() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"set k 0 0 1 noreply\r\nx\r\n", b"set k 0 0 1\r\nx\r\n"),
            (b"set k 0 0 1  noreply  \nx\r\n", b"set k 0 0 1\r\nx\r\n"),
            (b"cas k 0 0 1 9 noreply\r\nx\r\n", b"cas k 0 0 1 9\r\nx\r\n"),
            (b"delete k 0 noreply\r\n", b"delete k 0\r\n"),
            (b"incr k 5 noreply\n", b"incr k 5\r\n"),
            (b"touch k 5 noreply\r\n", b"touch k 5\r\n"),
            (b"set k 0 0 1\nx\r\n", b"set k 0 0 1\nx\r\n"),
            (b"get noreply\r\n", b"get noreply\r\n"),
        ];
        for &(input, expected) in cases {
            let mut buf = input.to_vec();
            buf.extend_from_slice(b"get after\r\n");
            let req = parse(&buf);
            let mut out = b"prefix".to_vec();
            write_without_noreply(&buf, &req, &mut out);
            assert_eq!(&out[6..], expected, "{:?}", String::from_utf8_lossy(input));
            let again = parse(&out[6..]);
            assert_eq!(
                (again.command, again.noreply, again.len),
                (req.command, false, out.len() - 6)
            );
        }
    }

    #[test]
    fn write_retrieval_builds_per_server_lines() {
        let buf = b"gat 300 a bb ccc\r\n";
        let req = parse(buf);
        let mut out = Vec::new();
        write_retrieval(buf, &req, [2, 0], &mut out);
        assert_eq!(out, b"gat 300 ccc a\r\n");
        out.clear();
        write_retrieval(buf, &req, [7], &mut out);
        assert!(out.is_empty(), "no valid index, nothing written");
        let buf = b"gets x y\n";
        write_retrieval(buf, &parse(buf), 0..2, &mut out);
        assert_eq!(out, b"gets x y\r\n");
        out.clear();
        let buf = b"delete x\r\n";
        write_retrieval(buf, &parse(buf), [0], &mut out);
        assert!(out.is_empty(), "not a retrieval");
    }

    #[test]
    fn many_keys() {
        let keys: Vec<String> = (0..1024).map(|i| format!("key:{i:0>200}")).collect();
        let line = format!("get {}\r\n", keys.join(" "));
        assert!(line.len() > limits().max_line);
        let req = parse(line.as_bytes());
        assert_eq!(req.keys.len(), 1024);
        assert_eq!(text(line.as_bytes(), &req.keys[1023]), keys[1023]);
        for n in (0..line.len()).step_by(997) {
            assert_eq!(parse_request(&line.as_bytes()[..n], &limits()), Ok(None));
        }
        let mut out = Vec::new();
        write_retrieval(line.as_bytes(), &req, 0..1024, &mut out);
        assert_eq!(out, line.as_bytes());

        let line = format!("get {} one-more\r\n", keys.join(" "));
        let e = error(line.as_bytes());
        assert_eq!((e.kind(), e.skip()), (K::TooManyKeys, Some(line.len())));
        assert_eq!(e.reply(), b"CLIENT_ERROR too many keys\r\n");
    }

    #[test]
    fn line_length_limit() {
        let small = Limits {
            max_line: 16,
            ..limits()
        };
        let at_limit = b"delete 123456789\r\n";
        assert!(matches!(parse_request(at_limit, &small), Ok(Some(_))));
        let bare = b"delete 123456789\n";
        assert!(matches!(parse_request(bare, &small), Ok(Some(_))));
        let over = b"delete 1234567890\r\n";
        for n in 0..over.len() {
            let got = parse_request(&over[..n], &small);
            assert!(got == Ok(None) || got.as_ref().is_err_and(|e| e.kind() == K::LineTooLong));
        }
        let e = parse_request(over, &small).unwrap_err();
        assert_eq!(
            (e.kind(), e.skip(), e.reply()),
            (K::LineTooLong, None, &b"CLIENT_ERROR line too long\r\n"[..])
        );
        // No line end in sight: refused once max_line + 2 bytes are in.
        assert_eq!(parse_request(&[b'x'; 17], &small), Ok(None));
        assert_eq!(
            parse_request(&[b'x'; 18], &small).map_err(|e| e.kind()),
            Err(K::LineTooLong)
        );
        // A retrieval may be longer, up to its keys' bound.
        let get = b"get 1234567890 1234567890\r\n";
        assert_eq!(
            parse_request(get, &small).map(|r| r.map(|r| r.keys.len())),
            Ok(Some(2))
        );
        let tight = Limits {
            max_keys: 1,
            max_key_len: 4,
            ..small
        };
        let e = parse_request(&[b"get ", &[b'x'; 40][..]].concat(), &tight).unwrap_err();
        assert_eq!(e.kind(), K::LineTooLong);
    }

    #[test]
    fn value_length_limit() {
        let small = Limits {
            max_value_len: 4,
            ..limits()
        };
        assert!(matches!(
            parse_request(b"set a 0 0 4\r\nabcd\r\n", &small),
            Ok(Some(_))
        ));
        let e = parse_request(b"set a 0 0 5\r\n", &small).unwrap_err();
        assert_eq!((e.kind(), e.skip()), (K::ValueTooLarge, None));
    }

    // Replies. The retrieval ones were captured from memcached 1.6.18.
    #[rustfmt::skip]
    /// Reply bytes, (key, data) of each value, whether it is an error.
    type RetrievalCase = (&'static [u8], &'static [(&'static str, &'static str)], bool);
    const RETRIEVAL_REPLIES: &[RetrievalCase] = &[
        (b"END\r\n", &[], false),
        (b"VALUE a 0 1\r\nx\r\nEND\r\n", &[("a", "x")], false),
        (b"VALUE n 0 2 11\r\n1 \r\nEND\r\n", &[("n", "1 ")], false),
        (
            b"VALUE n 0 2\r\n1 \r\nVALUE n 0 2\r\n1 \r\nEND\r\n",
            &[("n", "1 "), ("n", "1 ")],
            false,
        ),
        (
            b"VALUE k 4294967295 4 18446744073709551615\r\n\r\n\r\n\r\nEND\r\n",
            &[("k", "\r\n\r\n")],
            false,
        ),
        (b"VALUE e 0 0\r\n\r\nEND\r\n", &[("e", "")], false),
        (b"ERROR\r\n", &[], true),
        (b"CLIENT_ERROR bad command line format\r\n", &[], true),
        (
            b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory writing get response\r\n",
            &[("a", "x")],
            true,
        ),
    ];

    #[rustfmt::skip]
    const LINE_REPLIES: &[(&[u8], bool)] = &[
        (b"STORED\r\n", false),
        (b"NOT_STORED\r\n", false),
        (b"EXISTS\r\n", false),
        (b"NOT_FOUND\r\n", false),
        (b"DELETED\r\n", false),
        (b"TOUCHED\r\n", false),
        (b"OK\r\n", false),
        (b"15\r\n", false),
        (b"VERSION 1.6.18\r\n", false),
        (b"ERROR\r\n", true),
        (b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", true),
        (b"SERVER_ERROR object too large for cache\r\n", true),
    ];

    #[test]
    fn golden_replies() {
        for &(input, values, is_error) in RETRIEVAL_REPLIES {
            let name = String::from_utf8_lossy(input);
            let reply = parse_reply(input, ReplyKind::Retrieval, &limits())
                .unwrap()
                .unwrap();
            assert_eq!(
                (reply.len, reply.is_error),
                (input.len(), is_error),
                "{name:?}"
            );
            let got: Vec<(String, String)> = reply
                .values
                .iter()
                .map(|v| (text(input, &v.key), text(input, &v.data)))
                .collect();
            let want: Vec<(String, String)> =
                values.iter().map(|&(k, d)| (k.into(), d.into())).collect();
            assert_eq!(got, want, "{name:?}");
            for v in &reply.values {
                assert!(input[v.block.clone()].starts_with(b"VALUE "));
                assert_eq!(
                    (v.block.end - 2, &input[v.data.end..v.block.end]),
                    (v.data.end, &b"\r\n"[..])
                );
            }
        }
        for &(input, is_error) in LINE_REPLIES {
            let reply = parse_reply(input, ReplyKind::Line, &limits())
                .unwrap()
                .unwrap();
            assert_eq!(
                (reply.len, reply.is_error, reply.values.len()),
                (input.len(), is_error, 0)
            );
        }
        let input = b"VALUE ab 5 3 7\r\nxyz\r\nEND\r\n";
        let reply = parse_reply(input, ReplyKind::Retrieval, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.values,
            vec![Value {
                key: 6..8,
                data: 16..19,
                block: 0..21
            }]
        );
    }

    #[test]
    fn every_strict_prefix_of_a_reply_is_incomplete() {
        let replies = RETRIEVAL_REPLIES
            .iter()
            .map(|r| (r.0, ReplyKind::Retrieval));
        for (input, kind) in replies.chain(LINE_REPLIES.iter().map(|r| (r.0, ReplyKind::Line))) {
            for n in 0..input.len() {
                let got = parse_reply(&input[..n], kind, &limits());
                assert_eq!(
                    got,
                    Ok(None),
                    "{:?} cut at {n}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn pieces_stream_the_same_reply() {
        let input = b"VALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nyz\r\nEND\r\nSTORED\r\n";
        let mut at = 0;
        let mut pieces = Vec::new();
        loop {
            let piece = parse_reply_piece(&input[at..], ReplyKind::Retrieval, &limits())
                .unwrap()
                .unwrap();
            at += piece.len();
            let last = piece.is_last();
            pieces.push(piece);
            if last {
                break;
            }
        }
        assert_eq!(at, input.len() - 8);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[2], Piece::End(5));
        let whole = parse_reply(input, ReplyKind::Retrieval, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(whole.len, at);
        let second = Value {
            key: 22..23,
            data: 29..31,
            block: 16..33,
        };
        assert_eq!(whole.values[1], second);
    }

    #[test]
    fn reply_errors() {
        use ReplyError::*;
        #[rustfmt::skip]
        let cases: &[(&[u8], ReplyKind, ReplyError)] = &[
            (b"END\n", ReplyKind::Retrieval, Malformed),
            (b"STORED\r\n", ReplyKind::Retrieval, Malformed),
            (b"END extra\r\n", ReplyKind::Retrieval, Malformed),
            (b" END\r\n", ReplyKind::Retrieval, Malformed),
            (b"\r\n", ReplyKind::Retrieval, Malformed),
            (b"VALUE a 0\r\n", ReplyKind::Retrieval, Malformed),
            (b"VALUE a x 1\r\n", ReplyKind::Retrieval, Malformed),
            (b"VALUE a 0 1 x\r\n", ReplyKind::Retrieval, Malformed),
            (b"VALUE a 0 1 2 3\r\n", ReplyKind::Retrieval, Malformed),
            (b"VALUE a 0 -1\r\n", ReplyKind::Retrieval, Malformed),
            (b"VALUE a 0 1\r\nxy", ReplyKind::Retrieval, BadDataChunk),
            (b"VALUE a 0 2000000\r\n", ReplyKind::Retrieval, ValueTooLarge),
            (b"END\r\n", ReplyKind::Line, Malformed),
            (b"VALUE a 0 1\r\nx\r\nEND\r\n", ReplyKind::Line, Malformed),
            (b"STORED x\r\n", ReplyKind::Line, Malformed),
            (b"12a\r\n", ReplyKind::Line, Malformed),
            (b"STORED\n", ReplyKind::Line, Malformed),
        ];
        for &(input, kind, expected) in cases {
            let got = parse_reply(input, kind, &limits());
            assert_eq!(got, Err(expected), "{:?}", String::from_utf8_lossy(input));
        }
        let small = Limits {
            max_line: 8,
            max_keys: 1,
            ..limits()
        };
        assert_eq!(
            parse_reply(b"SERVER_ERROR x\r\n", ReplyKind::Line, &small),
            Err(LineTooLong)
        );
        let two = b"VALUE a 0 1\r\nx\r\nVALUE b 0 1\r\ny\r\nEND\r\n";
        let small = Limits {
            max_keys: 1,
            ..limits()
        };
        assert_eq!(
            parse_reply(two, ReplyKind::Retrieval, &small),
            Err(TooManyValues)
        );
    }

    #[test]
    fn reply_kinds() {
        assert_eq!(Get.reply_kind(), Some(ReplyKind::Retrieval));
        assert_eq!(Gats.reply_kind(), Some(ReplyKind::Retrieval));
        assert_eq!(Cas.reply_kind(), Some(ReplyKind::Line));
        assert_eq!(Version.reply_kind(), Some(ReplyKind::Line));
        assert_eq!(Quit.reply_kind(), None);
        assert_eq!(FlushAll.reply_kind(), None);
        for &(input, command, ..) in REQUESTS {
            let name = input
                .trim_ascii_start()
                .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
                .next();
            assert_eq!(name, Some(command.name().as_bytes()));
        }
    }
}
