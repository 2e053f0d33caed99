//! One Redis client connection: read what the client sent, parse every complete command,
//! route each by its key to the owning shard's pipelined connection (or answer it locally),
//! and write the replies back in request order, in as few syscalls as the replies allow.
//!
//! The session follows the routing table of the moment: after a reload its next commands go
//! where the new table places their keys. It holds no buffer while idle (they come from the
//! worker's pool) and stops reading from a client that has `max_pipeline` commands in flight
//! or is not reading its replies. A protocol error is answered with Redis' own text and ends
//! the connection, as Redis does.

use std::io;
use std::ops::Range;
use std::rc::Rc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::command::{self, Kind, Local, Split};
use super::merge::RedisMerge;
use super::resp::{self, Limits, RequestParser};
use super::{Resp, error};
use crate::config::model::{KeyedListener, ReadFrom};
use crate::metrics::counters::GaugeGuard;
use crate::proto::keyed::Shards;
use crate::proto::keyed::replies::{Replies, Tag};
use crate::upstream::pipeline::Pipeline;
use crate::worker::{Accepted, TableRef, Worker};

type RedisReplies = Replies<RedisMerge>;

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let listener = &conn.table.listeners[conn.listener];
    let stats = listener.stats.clone();
    let lc = stats.workers.get(worker.id);
    let _active = GaugeGuard::new(&lc.active);
    let _ = conn.stream.set_nodelay(true);
    let mut s = Session {
        router: Router {
            authed: listener.config.keyed.auth.is_none(),
            listen: listener.config.listen,
            settings: listener.config.keyed.clone(),
            cluster: listener.config.cluster,
            table: conn.table.clone(),
            shards: None,
            replies: Rc::new(Replies::default()),
            client: fastrand::u64(..),
            quit: false,
            worker: worker.clone(),
        },
        stream: &conn.stream,
    };
    let end = s.run(|n| lc.bytes_in.add(n), |n| lc.bytes_out.add(n)).await;
    if let Err(e) = end {
        tracing::debug!(peer = %conn.peer, error = %e, "redis client connection ended");
    }
    s.router.replies.close();
}

struct Session<'a> {
    router: Router,
    stream: &'a TcpStream,
}

/// Everything a command needs to be routed; separate from the parser that borrows the
/// command's bytes.
struct Router {
    worker: Rc<Worker>,
    table: Rc<TableRef>,
    listen: std::net::SocketAddr,
    cluster: usize,
    settings: KeyedListener,
    shards: Option<Rc<Shards<Resp>>>,
    replies: Rc<RedisReplies>,
    /// Picks this client's connection among `server_connections`.
    client: u64,
    authed: bool,
    /// QUIT, a protocol error or the client's EOF: answer what is in flight, then close.
    quit: bool,
}

impl Session<'_> {
    async fn run(&mut self, bytes_in: impl Fn(u64), bytes_out: impl Fn(u64)) -> io::Result<()> {
        let worker = self.router.worker.clone();
        let pool = &worker.vecs;
        let mut parser = RequestParser::default();
        let mut rbuf: Vec<u8> = Vec::new();
        let mut wbuf: Vec<u8> = Vec::new();
        let mut wpos = 0;
        let idle_timeout = self.router.settings_idle_timeout();
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let mut last_active = Instant::now();
        // Complete commands are waiting in `rbuf` because the pipeline limit was reached.
        let mut held = false;
        let result = loop {
            // Write every reply that is complete, in order.
            if self.router.replies.take_output(&mut wbuf) {
                while wpos < wbuf.len() {
                    match self.stream.try_write(&wbuf[wpos..]) {
                        Ok(n) => {
                            wpos += n;
                            bytes_out(n as u64);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            let writing = wpos < wbuf.len();
            if !writing {
                wbuf.clear();
                wpos = 0;
            }
            let in_flight = self.router.replies.in_flight();
            if self.router.quit && in_flight == 0 && !writing {
                break Ok(());
            }
            // Commands left unparsed when the pipeline limit was hit.
            let room = in_flight < self.router.settings.max_pipeline;
            if held && room && !writing && !self.router.quit {
                held = self.parse(&mut parser, &mut rbuf);
                continue;
            }
            if in_flight == 0 && !writing && rbuf.is_empty() {
                // Idle: hold no buffers.
                pool.put(&mut wbuf);
                self.router.replies.shrink();
            }
            let can_read = room && !writing && !self.router.quit;
            tokio::select! {
                biased;
                () = self.router.replies.ready.notified() => {}
                r = self.stream.writable(), if writing => r?,
                r = self.stream.readable(), if can_read => {
                    r?;
                    if rbuf.capacity() == 0 {
                        rbuf = pool.take();
                    } else if rbuf.capacity() - rbuf.len() < 4096 {
                        rbuf.reserve(rbuf.len().max(16 * 1024));
                    }
                    match self.stream.try_read_buf(&mut rbuf) {
                        Ok(0) => self.router.quit = true,
                        Ok(n) => {
                            bytes_in(n as u64);
                            last_active = Instant::now();
                            held = self.parse(&mut parser, &mut rbuf);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => break Err(e),
                    }
                    if rbuf.is_empty() {
                        pool.put(&mut rbuf);
                    }
                }
                () = &mut idle => {
                    let due = last_active + idle_timeout;
                    if due <= Instant::now() && in_flight == 0 {
                        break Ok(());
                    }
                    idle.as_mut().reset(due.max(Instant::now() + idle_timeout / 8));
                }
            }
        };
        pool.put(&mut rbuf);
        pool.put(&mut wbuf);
        result
    }

    /// Routes every complete command in `rbuf` (up to the pipeline limit) and drops its bytes.
    /// Returns whether it stopped at the limit with bytes left to parse.
    fn parse(&mut self, parser: &mut RequestParser, rbuf: &mut Vec<u8>) -> bool {
        self.router.refresh_table();
        let limits = Limits {
            max_args: self.router.settings.max_args,
            max_bulk_len: self.router.settings.max_bulk_len,
        };
        let mut at = 0;
        let held = loop {
            if self.router.quit {
                break false;
            }
            if self.router.replies.in_flight() >= self.router.settings.max_pipeline {
                break at < rbuf.len();
            }
            let frame = &rbuf[at..];
            match parser.parse(frame, limits) {
                Ok(Some(req)) => {
                    let len = req.len;
                    if !req.args.is_empty() {
                        self.router.command(&frame[..len], req.args, req.inline);
                    }
                    at += len;
                }
                Ok(None) => break false,
                Err(e) => {
                    let msg = format!("-ERR {e}\r\n");
                    self.router
                        .replies
                        .local(|o| o.extend_from_slice(msg.as_bytes()));
                    self.router.quit = true;
                    at = rbuf.len();
                }
            }
        };
        rbuf.drain(..at);
        held
    }
}

impl Router {
    fn settings_idle_timeout(&self) -> std::time::Duration {
        self.table.listeners[self.listener_index()]
            .config
            .idle_timeout
    }

    fn listener_index(&self) -> usize {
        self.table
            .listener_index(self.listen)
            .unwrap_or_default()
            .min(self.table.listeners.len().saturating_sub(1))
    }

    /// Adopts a newer routing table, if the listener is still in it.
    fn refresh_table(&mut self) {
        let t = self.worker.table();
        if Rc::ptr_eq(&t, &self.table) {
            return;
        }
        if let Some(i) = t.listener_index(self.listen) {
            let l = &t.listeners[i];
            self.cluster = l.config.cluster;
            self.settings = l.config.keyed.clone();
            self.table = t;
            self.shards = None;
        }
    }

    fn shards(&mut self) -> Rc<Shards<Resp>> {
        if let Some(s) = &self.shards {
            return s.clone();
        }
        let s = self.worker.redis.shards(&self.table, self.cluster);
        self.shards = Some(s.clone());
        s
    }

    fn reply(&self, bytes: &[u8]) {
        self.replies.local(|o| o.extend_from_slice(bytes));
    }

    fn reply_error(&self, msg: &str) {
        self.replies.local(|o| error(o, msg));
    }

    /// Routes one command. `frame` is its bytes as received, `args` ranges into it.
    fn command(&mut self, frame: &[u8], args: &[Range<usize>], inline: bool) {
        let arg = |i: usize| &frame[args[i].clone()];
        let name = arg(0);
        let Some(spec) = command::lookup(name) else {
            let msg = format!("-ERR unknown command '{}'\r\n", printable(name));
            return self.reply(msg.as_bytes());
        };
        if args.len() < usize::from(spec.min_args) {
            let msg = format!(
                "-ERR wrong number of arguments for '{}' command\r\n",
                printable(name).to_lowercase()
            );
            return self.reply(msg.as_bytes());
        }
        if !self.authed
            && !matches!(
                spec.kind,
                Kind::Local(Local::Auth | Local::Quit | Local::Hello)
            )
        {
            return self.reply(b"-NOAUTH Authentication required.\r\n");
        }
        match spec.kind {
            Kind::Local(l) => self.local(l, frame, args),
            Kind::Refused(why) => {
                self.reply_error(&format!("{} is not supported: {why}", printable(name)));
            }
            Kind::Keys { .. } | Kind::NumKeys { .. } => {
                let keys = match command::key_indices(spec.kind, args.len(), arg) {
                    Ok(k) => k,
                    Err(_) => return self.reply_error("value is not an integer or out of range"),
                };
                let step = command::key_step(spec.kind);
                let mut indices = keys.step_by(step);
                if let Kind::NumKeys { dest: true, .. } = spec.kind {
                    // ZUNIONSTORE dest numkeys key...: the destination must be with the keys.
                    let dest = self.locate(arg(1));
                    if indices.all(|i| self.locate(arg(i)) == dest) {
                        return self.forward(dest, spec.read, frame, args, inline);
                    }
                    return self.different_shards(name);
                }
                let Some(first) = indices.next() else {
                    return self.reply_error(&format!(
                        "{} without keys cannot be routed to a shard",
                        printable(name)
                    ));
                };
                let server = self.locate(arg(first));
                if indices.all(|i| self.locate(arg(i)) == server) {
                    self.forward(server, spec.read, frame, args, inline);
                } else {
                    self.different_shards(name);
                }
            }
            Kind::Split(split) => self.split(split, spec.read, frame, args, inline),
        }
    }

    fn different_shards(&self, name: &[u8]) {
        self.reply_error(&format!(
            "the keys of {} are on different shards; give them one hash tag",
            printable(name)
        ));
    }

    /// The ring index of the server that owns `key`.
    fn locate(&self, key: &[u8]) -> usize {
        let c = &self.table.clusters[self.cluster];
        let sh = &self.table.config.clusters[self.cluster].sharding;
        c.ring
            .as_ref()
            .map_or(0, |r| r.locate(sh.hash, sh.hash_tag, key))
    }

    /// The connection a command for server `i` goes to, or an error text.
    fn target(&mut self, i: usize, read: bool) -> Result<Rc<Pipeline<Resp>>, String> {
        let shards = self.shards();
        let read_from = self.table.config.clusters[self.cluster].sharding.read_from;
        if read && read_from != ReadFrom::Primary {
            if let Some(r) = shards.replica(i, self.client) {
                return Ok(r.clone());
            }
            if read_from == ReadFrom::Replica {
                return Err(format!(
                    "no replica of server {} is available",
                    shards.primary(i, self.client).addr
                ));
            }
        }
        Ok(shards.primary(i, self.client).clone())
    }

    fn forward(
        &mut self,
        server: usize,
        read: bool,
        frame: &[u8],
        args: &[Range<usize>],
        inline: bool,
    ) {
        let pipe = match self.target(server, read) {
            Ok(p) => p,
            Err(e) => return self.reply_error(&e),
        };
        let tag = self.replies.open(false);
        pipe.send(&self.replies, tag, (), |out| {
            if inline {
                resp::write_array_header(out, args.len());
                for a in args {
                    resp::write_bulk(out, &frame[a.clone()]);
                }
            } else {
                out.extend_from_slice(frame);
            }
        });
    }

    /// MGET, MSET, DEL, UNLINK, EXISTS, TOUCH: one sub-command per shard, merged.
    fn split(
        &mut self,
        split: Split,
        read: bool,
        frame: &[u8],
        args: &[Range<usize>],
        inline: bool,
    ) {
        let step = if split == Split::Mset { 2 } else { 1 };
        if (args.len() - 1) % step != 0 {
            let msg = format!(
                "-ERR wrong number of arguments for '{}' command\r\n",
                printable(&frame[args[0].clone()]).to_lowercase()
            );
            return self.reply(msg.as_bytes());
        }
        let servers: Vec<usize> = (1..args.len())
            .step_by(step)
            .map(|i| self.locate(&frame[args[i].clone()]))
            .collect();
        if servers.iter().all(|&s| s == servers[0]) {
            return self.forward(servers[0], read, frame, args, inline);
        }
        // Parts in order of first appearance; `order[k]` = (part, index in part) of key k.
        let mut parts: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut order = Vec::with_capacity(servers.len());
        for (k, &s) in servers.iter().enumerate() {
            let p = match parts.iter().position(|(ps, _)| *ps == s) {
                Some(p) => p,
                None => {
                    parts.push((s, Vec::new()));
                    parts.len() - 1
                }
            };
            order.push((p as u32, parts[p].1.len() as u32));
            parts[p].1.push(1 + k * step);
        }
        let merge = match split {
            Split::Mget => RedisMerge::mget(order, parts.len()),
            Split::Mset => RedisMerge::Ok { error: None },
            Split::Sum => RedisMerge::Sum {
                total: 0,
                error: None,
            },
        };
        let seq = self.replies.open_split(parts.len() as u32, merge);
        let name = &frame[args[0].clone()];
        for (p, (server, firsts)) in parts.iter().enumerate() {
            let tag = Tag {
                seq,
                part: p as u32,
            };
            match self.target(*server, read) {
                Ok(pipe) => pipe.send(&self.replies, tag, (), |out| {
                    resp::write_array_header(out, 1 + firsts.len() * step);
                    resp::write_bulk(out, name);
                    for &i in firsts {
                        for a in &args[i..i + step] {
                            resp::write_bulk(out, &frame[a.clone()]);
                        }
                    }
                }),
                Err(e) => {
                    let mut v = Vec::new();
                    error(&mut v, &e);
                    self.replies.deliver(tag, &v);
                }
            }
        }
    }

    fn local(&mut self, l: Local, frame: &[u8], args: &[Range<usize>]) {
        let arg = |i: usize| &frame[args[i].clone()];
        match l {
            Local::Ping if args.len() == 1 => self.reply(b"+PONG\r\n"),
            Local::Ping | Local::Echo if args.len() == 2 => {
                self.replies.local(|o| resp::write_bulk(o, arg(1)));
            }
            Local::Ping | Local::Echo => self.wrong_args(arg(0)),
            Local::Quit => {
                self.reply(b"+OK\r\n");
                self.quit = true;
            }
            Local::Select if args.len() == 2 && arg(1) == b"0" => self.reply(b"+OK\r\n"),
            Local::Select => self.reply_error("only database 0 is served through a sharding proxy"),
            Local::Command => self.reply(b"*0\r\n"),
            Local::Auth => self.auth(args.len(), arg),
            Local::Hello => {
                if args.len() >= 2 && arg(1) != b"2" {
                    self.reply(b"-NOPROTO sorry, this protocol version is not supported\r\n");
                } else {
                    self.reply_error("HELLO is not supported; use AUTH and RESP2");
                }
            }
        }
    }

    fn auth<'f>(&mut self, argc: usize, arg: impl Fn(usize) -> &'f [u8]) {
        let Some(password) = self.settings.auth.clone() else {
            return self.reply(b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n");
        };
        let given = match argc {
            2 => Some(arg(1)),
            3 if arg(1) == b"default" => Some(arg(2)),
            3 => None,
            _ => return self.wrong_args(arg(0)),
        };
        if given.is_some_and(|g| constant_time_eq(g, password.as_bytes())) {
            self.authed = true;
            self.reply(b"+OK\r\n");
        } else {
            self.reply(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
        }
    }

    fn wrong_args(&self, name: &[u8]) {
        let msg = format!(
            "-ERR wrong number of arguments for '{}' command\r\n",
            printable(name).to_lowercase()
        );
        self.reply(msg.as_bytes());
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A command name for an error message: printable ASCII, at most 64 characters.
fn printable(name: &[u8]) -> String {
    name.iter()
        .take(64)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}
