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
use crate::config::model::ReadFrom;
use crate::proto::keyed::replies::Tag;
use crate::proto::keyed::route::{Route, split_by_server};
use crate::proto::keyed::session::{self, Handler};
use crate::upstream::pipeline::Pipeline;
use crate::worker::{Accepted, Worker};

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let route = Route::new(&worker, &conn, |w| &w.redis);
    let router = Router {
        authed: route.settings().auth.is_none(),
        route,
        parser: RequestParser::default(),
    };
    session::serve(worker, conn, router).await;
}

/// One client's routing state.
struct Router {
    route: Route<Resp>,
    parser: RequestParser,
    authed: bool,
}

impl Handler for Router {
    type F = Resp;
    const ENGINE: &'static str = "redis";

    fn route(&mut self) -> &mut Route<Resp> {
        &mut self.route
    }

    fn on_park(&mut self) {
        self.route.forget_shards();
        self.parser.release();
    }

    fn handle(&mut self, buf: &[u8]) -> usize {
        self.route.refresh_table();
        let limits = Limits {
            max_args: self.route.settings().max_args,
            max_bulk_len: self.route.settings().max_bulk_len,
        };
        // Taken out so a parsed command can borrow it while `self` routes the command.
        let mut parser = std::mem::take(&mut self.parser);
        let mut at = 0;
        while !self.route.quit
            && self.route.replies.in_flight() < self.route.settings().max_pipeline
        {
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
                    if frame.len() > self.route.settings().max_query_buffer {
                        self.route
                            .reply(b"-ERR Protocol error: query buffer over limit\r\n");
                        self.route.quit = true;
                        at = buf.len();
                    }
                    break;
                }
                Err(e) => {
                    let msg = format!("-ERR {e}\r\n");
                    self.route.reply(msg.as_bytes());
                    self.route.quit = true;
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
    fn reply_error(&self, msg: &str) {
        self.route.replies.local(|o| error(o, msg));
    }

    /// Routes one command. `frame` is its bytes as received, `args` ranges into it.
    fn command(&mut self, frame: &[u8], args: &[Range<usize>], inline: bool) {
        let arg = |i: usize| &frame[args[i].clone()];
        let name = arg(0);
        let Some(spec) = command::lookup(name) else {
            let msg = format!("-ERR unknown command '{}'\r\n", printable(name));
            return self.route.reply(msg.as_bytes());
        };
        if args.len() < usize::from(spec.min_args) {
            let msg = format!(
                "-ERR wrong number of arguments for '{}' command\r\n",
                printable(name).to_lowercase()
            );
            return self.route.reply(msg.as_bytes());
        }
        if !self.authed
            && !matches!(
                spec.kind,
                Kind::Local(Local::Auth | Local::Quit | Local::Hello)
            )
        {
            return self.route.reply(b"-NOAUTH Authentication required.\r\n");
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
                    let dest = self.route.locate(arg(1));
                    if indices.all(|i| self.route.locate(arg(i)) == dest) {
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
                let server = self.route.locate(arg(first));
                if indices.all(|i| self.route.locate(arg(i)) == server) {
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

    /// The connection a command for server `i` goes to, or an error text.
    fn target(&mut self, i: usize, read: bool) -> Result<Rc<Pipeline<Resp>>, String> {
        let shards = self.route.shards();
        let read_from = self.route.table().config.clusters[self.route.cluster]
            .sharding
            .read_from;
        if read && read_from != ReadFrom::Primary {
            if let Some(r) = shards.replica(i, self.route.client) {
                return Ok(r.clone());
            }
            if read_from == ReadFrom::Replica {
                return Err(format!(
                    "no replica of server {} is available",
                    shards.primary(i, self.route.client).addr
                ));
            }
        }
        Ok(shards.primary(i, self.route.client).clone())
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
        let tag = self.route.replies.open(false);
        pipe.send(&self.route.replies, tag, (), |out| {
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
            return self.route.reply(msg.as_bytes());
        }
        let servers: Vec<usize> = (1..args.len())
            .step_by(step)
            .map(|i| self.route.locate(&frame[args[i].clone()]))
            .collect();
        if servers.iter().all(|&s| s == servers[0]) {
            return self.forward(servers[0], read, frame, args, inline);
        }
        let (parts, order) = split_by_server(&servers);
        let merge = match split {
            Split::Mget => RedisMerge::mget(order, parts.len()),
            Split::Mset => RedisMerge::Ok { error: None },
            Split::Sum => RedisMerge::Sum {
                total: 0,
                error: None,
            },
        };
        let seq = self.route.replies.open_split(parts.len() as u32, merge);
        let name = &frame[args[0].clone()];
        for (p, (server, keys)) in parts.iter().enumerate() {
            let tag = Tag {
                seq,
                part: p as u32,
            };
            match self.target(*server, read) {
                Ok(pipe) => pipe.send(&self.route.replies, tag, (), |out| {
                    resp::write_array_header(out, 1 + keys.len() * step);
                    resp::write_bulk(out, name);
                    for &k in keys {
                        let i = 1 + k * step;
                        for a in &args[i..i + step] {
                            resp::write_bulk(out, &frame[a.clone()]);
                        }
                    }
                }),
                Err(e) => {
                    let mut v = Vec::new();
                    error(&mut v, &e);
                    self.route.replies.deliver(tag, &v);
                }
            }
        }
    }

    fn local(&mut self, l: Local, frame: &[u8], args: &[Range<usize>]) {
        let arg = |i: usize| &frame[args[i].clone()];
        match l {
            Local::Ping if args.len() == 1 => self.route.reply(b"+PONG\r\n"),
            Local::Ping | Local::Echo if args.len() == 2 => {
                self.route.replies.local(|o| resp::write_bulk(o, arg(1)));
            }
            Local::Ping | Local::Echo => self.wrong_args(arg(0)),
            Local::Quit => {
                self.route.reply(b"+OK\r\n");
                self.route.quit = true;
            }
            Local::Select if args.len() == 2 && arg(1) == b"0" => self.route.reply(b"+OK\r\n"),
            Local::Select => self.reply_error("only database 0 is served through a sharding proxy"),
            Local::Command => self.route.reply(b"*0\r\n"),
            Local::Auth => self.auth(args.len(), arg),
            Local::Hello => {
                if args.len() >= 2 && arg(1) != b"2" {
                    self.route
                        .reply(b"-NOPROTO sorry, this protocol version is not supported\r\n");
                } else {
                    self.reply_error("HELLO is not supported; use AUTH and RESP2");
                }
            }
        }
    }

    fn auth<'f>(&mut self, argc: usize, arg: impl Fn(usize) -> &'f [u8]) {
        let Some(password) = self.route.settings().auth.clone() else {
            return self.route.reply(b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n");
        };
        let given = match argc {
            2 => Some(arg(1)),
            3 if arg(1) == b"default" => Some(arg(2)),
            3 => None,
            _ => return self.wrong_args(arg(0)),
        };
        if given.is_some_and(|g| constant_time_eq(g, password.as_bytes())) {
            self.authed = true;
            self.route.reply(b"+OK\r\n");
        } else {
            self.route
                .reply(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
        }
    }

    fn wrong_args(&self, name: &[u8]) {
        let msg = format!(
            "-ERR wrong number of arguments for '{}' command\r\n",
            printable(name).to_lowercase()
        );
        self.route.reply(msg.as_bytes());
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_parked_redis_client_holds_at_most_half_a_kilobyte() {
        crate::proto::keyed::session::assert_parked_client_is_small::<super::Router>();
    }
}
