//! One Memcached client connection: frame every complete request, route it by its key to the
//! owning server's pipelined connection, split multi-key retrievals per server, answer
//! `version` and `quit` locally and refuse whole-server commands. The connection loop
//! (reading, writing replies in order, flow control) is `proto::keyed::session`.
//!
//! A malformed request gets memcached's own answer (`ERROR`, `CLIENT_ERROR ...`); the
//! connection goes on when the codec can find the next request and closes when it cannot.

use std::rc::Rc;

use super::codec::{self, Command, Limits, ReplyKind, Request};
use super::merge::Multiget;
use super::{Ascii, error};
use crate::config::model::KeyedListener;
use crate::proto::keyed::replies::Tag;
use crate::proto::keyed::route::{Route, split_by_server};
use crate::proto::keyed::session::{self, Handler};
use crate::worker::{Accepted, Worker};

/// Most keys in one retrieval (it also bounds the length of its command line).
const MAX_KEYS: usize = 4096;

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let route = Route::new(&worker, &conn, |w| &w.memcache);
    let router = Router {
        limits: limits(route.settings()),
        route,
        spare_keys: Vec::new(),
    };
    session::serve(worker, conn, router).await;
}

fn limits(l: &KeyedListener) -> Limits {
    Limits {
        max_value_len: l.max_bulk_len,
        max_keys: l.max_args.min(MAX_KEYS),
        ..Limits::default()
    }
}

struct Router {
    route: Route<Ascii>,
    limits: Limits,
    /// The key list of the previous request, reused by the next one.
    spare_keys: Vec<std::ops::Range<usize>>,
}

impl Handler for Router {
    type F = Ascii;
    const ENGINE: &'static str = "memcache";

    fn route(&mut self) -> &mut Route<Ascii> {
        &mut self.route
    }

    fn on_park(&mut self) {
        self.route.forget_shards();
        self.spare_keys = Vec::new();
    }

    fn handle(&mut self, buf: &[u8]) -> usize {
        if self.route.refresh_table() {
            self.limits = limits(self.route.settings());
        }
        let mut at = 0;
        while !self.route.quit
            && self.route.replies.in_flight() < self.route.settings().max_pipeline
        {
            let rest = &buf[at..];
            let keys = std::mem::take(&mut self.spare_keys);
            match codec::parse_request_reusing(rest, &self.limits, keys) {
                Ok(Some(req)) => {
                    self.request(rest, &req);
                    at += req.len;
                    self.spare_keys = req.keys;
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.reply().is_empty() {
                        self.route.reply(e.reply());
                    }
                    match e.skip() {
                        Some(n) => at += n,
                        None => {
                            self.route.quit = true;
                            at = buf.len();
                        }
                    }
                }
            }
        }
        // A multi-get of many keys does not pin a long key list on an idle connection.
        if self.spare_keys.capacity() > 16 {
            self.spare_keys = Vec::new();
        }
        at
    }
}

impl Router {
    /// Routes one request; `buf` starts with it and its ranges index `buf`.
    fn request(&mut self, buf: &[u8], req: &Request) {
        let frame = &buf[..req.len];
        match req.command {
            Command::Quit => self.route.quit = true,
            Command::Version => self
                .route
                .reply(concat!("VERSION corelane-", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes()),
            c if c.is_refused() => {
                if !req.noreply {
                    let mut v = Vec::new();
                    error(
                        &mut v,
                        &format!("{} is not supported through a sharding proxy", c.name()),
                    );
                    self.route.reply(&v);
                }
            }
            c if c.is_retrieval() => self.retrieval(buf, req),
            _ => {
                let Some(key) = req.keys.first() else {
                    return self.route.reply(b"ERROR\r\n");
                };
                let server = self.route.locate(&buf[key.clone()]);
                let pipe = self
                    .route
                    .shards()
                    .primary(server, self.route.client)
                    .clone();
                let tag = self.route.replies.open(req.noreply);
                pipe.send(&self.route.replies, tag, ReplyKind::Line, |out| {
                    if req.noreply {
                        codec::write_without_noreply(buf, req, out);
                    } else {
                        out.extend_from_slice(frame);
                    }
                });
            }
        }
    }

    /// get/gets/gat/gats: whole to one server, or split per server and merged.
    fn retrieval(&mut self, buf: &[u8], req: &Request) {
        let servers: Vec<usize> = req
            .keys
            .iter()
            .map(|k| self.route.locate(&buf[k.clone()]))
            .collect();
        let shards = self.route.shards();
        let Some(&first) = servers.first() else {
            return self.route.reply(b"ERROR\r\n");
        };
        if servers.iter().all(|&s| s == first) {
            let pipe = shards.primary(first, self.route.client).clone();
            let tag = self.route.replies.open(false);
            pipe.send(&self.route.replies, tag, ReplyKind::Retrieval, |out| {
                out.extend_from_slice(&buf[..req.len]);
            });
            return;
        }
        let (parts, index) = split_by_server(&servers);
        let order = index
            .iter()
            .zip(&req.keys)
            .map(|(&(p, _), k)| (p, Box::from(&buf[k.clone()])))
            .collect();
        let seq = self
            .route
            .replies
            .open_split(parts.len() as u32, Multiget::new(order, parts.len()));
        for (p, (server, keys)) in parts.iter().enumerate() {
            let pipe = shards.primary(*server, self.route.client).clone();
            let tag = Tag {
                seq,
                part: p as u32,
            };
            pipe.send(&self.route.replies, tag, ReplyKind::Retrieval, |out| {
                codec::write_retrieval(buf, req, keys.iter().copied(), out);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_parked_memcache_client_holds_at_most_half_a_kilobyte() {
        crate::proto::keyed::session::assert_parked_client_is_small::<super::Router>();
    }
}
