//! One Redis client connection: parse every complete command, route each by its key to the
//! owning shard's pipelined connection, split the multi-key ones, or answer it locally. The
//! connection loop itself (reading, writing replies in order, flow control) is
//! `proto::keyed::session`.
//!
//! The session follows the routing table of the moment: after a reload its next commands go
//! where the new table places their keys. A protocol error is answered with Redis' own text
//! and ends the connection, as Redis does.

use std::ops::Range;
use std::rc::Rc;

use super::command::{self, Kind, Local, Split};
use super::merge::RedisMerge;
use super::resp::{self, Limits, RequestParser};
use super::{Resp, error};
use crate::config::model::{KeyedListener, ReadFrom};
use crate::metrics::counters::GaugeGuard;
use crate::proto::keyed::Shards;
use crate::proto::keyed::replies::{Replies, Tag};
use crate::proto::keyed::session::{Handler, drive};
use crate::upstream::pipeline::Pipeline;
use crate::worker::{Accepted, TableRef, Worker};

type RedisReplies = Replies<RedisMerge>;

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let listener = &conn.table.listeners[conn.listener];
    let stats = listener.stats.clone();
    let lc = stats.workers.get(worker.id);
    let _active = GaugeGuard::new(&lc.active);
    let _ = conn.stream.set_nodelay(true);
    let idle_timeout = listener.config.idle_timeout;
    let mut router = Router {
        authed: listener.config.keyed.auth.is_none(),
        listen: listener.config.listen,
        settings: listener.config.keyed.clone(),
        cluster: listener.config.cluster,
        table: conn.table.clone(),
        shards: None,
        replies: Rc::new(Replies::default()),
        parser: RequestParser::default(),
        client: fastrand::u64(..),
        quit: false,
        worker: worker.clone(),
    };
    let wake: std::rc::Rc<dyn crate::worker::Wake> = router.replies.clone();
    worker.drain.subscribe(std::rc::Rc::downgrade(&wake));
    drop(wake);
    let end = drive(
        &conn.stream,
        (&worker.buffers, &worker.vecs),
        &mut router,
        idle_timeout,
        lc,
        &worker.drain,
    )
    .await;
    if let Err(e) = end {
        tracing::debug!(peer = %conn.peer, error = %e, "redis client connection ended");
    }
}

/// One client's routing state.
struct Router {
    worker: Rc<Worker>,
    table: Rc<TableRef>,
    listen: std::net::SocketAddr,
    cluster: usize,
    settings: KeyedListener,
    shards: Option<Rc<Shards<Resp>>>,
    replies: Rc<RedisReplies>,
    parser: RequestParser,
    /// Picks this client's connection among `server_connections`.
    client: u64,
    authed: bool,
    /// QUIT, a protocol error or the client's EOF: answer what is in flight, then close.
    quit: bool,
}

impl Handler for Router {
    type Merge = RedisMerge;

    fn replies(&self) -> &Replies<RedisMerge> {
        &self.replies
    }

    fn quitting(&self) -> bool {
        self.quit
    }

    fn quit(&mut self) {
        self.quit = true;
    }

    fn max_pipeline(&self) -> usize {
        self.settings.max_pipeline
    }

    fn handle(&mut self, buf: &[u8]) -> usize {
        self.refresh_table();
        let limits = Limits {
            max_args: self.settings.max_args,
            max_bulk_len: self.settings.max_bulk_len,
        };
        // Taken out so a parsed command can borrow it while `self` routes the command.
        let mut parser = std::mem::take(&mut self.parser);
        let mut at = 0;
        while !self.quit && self.replies.in_flight() < self.settings.max_pipeline {
            let frame = &buf[at..];
            match parser.parse(frame, limits) {
                Ok(Some(req)) => {
                    let len = req.len;
                    if !req.args.is_empty() {
                        self.command(&frame[..len], req.args, req.inline);
                    }
                    at += len;
                }
                Ok(None) => {
                    if frame.len() > self.settings.max_query_buffer {
                        self.reply(b"-ERR Protocol error: query buffer over limit\r\n");
                        self.quit = true;
                        at = buf.len();
                    }
                    break;
                }
                Err(e) => {
                    let msg = format!("-ERR {e}\r\n");
                    self.reply(msg.as_bytes());
                    self.quit = true;
                    at = buf.len();
                }
            }
        }
        if at == buf.len() {
            parser.shrink();
        }
        self.parser = parser;
        at
    }
}

impl Router {
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
    fn locate(&mut self, key: &[u8]) -> usize {
        let shards = self.shards();
        let c = &self.table.clusters[self.cluster];
        let sh = &self.table.config.clusters[self.cluster].sharding;
        shards.locate(c.ring.as_ref(), sh.hash, sh.hash_tag, key)
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
