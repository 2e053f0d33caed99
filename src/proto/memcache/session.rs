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
use crate::metrics::counters::GaugeGuard;
use crate::proto::keyed::Shards;
use crate::proto::keyed::replies::{Replies, Tag};
use crate::proto::keyed::session::{Handler, drive};
use crate::worker::{Accepted, TableRef, Worker};

/// Most keys in one retrieval (it also bounds the length of its command line).
const MAX_KEYS: usize = 4096;

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let listener = &conn.table.listeners[conn.listener];
    let stats = listener.stats.clone();
    let lc = stats.workers.get(worker.id);
    let _active = GaugeGuard::new(&lc.active);
    let _ = conn.stream.set_nodelay(true);
    let idle_timeout = listener.config.idle_timeout;
    let mut router = Router {
        limits: limits(&listener.config.keyed),
        listen: listener.config.listen,
        settings: listener.config.keyed.clone(),
        cluster: listener.config.cluster,
        table: conn.table.clone(),
        shards: None,
        replies: Rc::new(Replies::default()),
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
        tracing::debug!(peer = %conn.peer, error = %e, "memcache client connection ended");
    }
}

fn limits(l: &KeyedListener) -> Limits {
    Limits {
        max_value_len: l.max_bulk_len,
        max_keys: l.max_args.min(MAX_KEYS),
        ..Limits::default()
    }
}

struct Router {
    worker: Rc<Worker>,
    table: Rc<TableRef>,
    listen: std::net::SocketAddr,
    cluster: usize,
    settings: KeyedListener,
    limits: Limits,
    shards: Option<Rc<Shards<Ascii>>>,
    replies: Rc<Replies<Multiget>>,
    client: u64,
    quit: bool,
}

impl Handler for Router {
    type Merge = Multiget;

    fn replies(&self) -> &Replies<Multiget> {
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
        let mut at = 0;
        while !self.quit && self.replies.in_flight() < self.settings.max_pipeline {
            let rest = &buf[at..];
            match codec::parse_request(rest, &self.limits) {
                Ok(Some(req)) => {
                    self.request(rest, &req);
                    at += req.len;
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.reply().is_empty() {
                        self.reply(e.reply());
                    }
                    match e.skip() {
                        Some(n) => at += n,
                        None => {
                            self.quit = true;
                            at = buf.len();
                        }
                    }
                }
            }
        }
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
            self.limits = limits(&self.settings);
            self.table = t;
            self.shards = None;
        }
    }

    fn shards(&mut self) -> Rc<Shards<Ascii>> {
        if let Some(s) = &self.shards {
            return s.clone();
        }
        let s = self.worker.memcache.shards(&self.table, self.cluster);
        self.shards = Some(s.clone());
        s
    }

    fn reply(&self, bytes: &[u8]) {
        self.replies.local(|o| o.extend_from_slice(bytes));
    }

    /// The ring index of the server that owns `key`.
    fn locate(&mut self, key: &[u8]) -> usize {
        let shards = self.shards();
        let c = &self.table.clusters[self.cluster];
        let sh = &self.table.config.clusters[self.cluster].sharding;
        shards.locate(c.ring.as_ref(), sh.hash, sh.hash_tag, key)
    }

    /// Routes one request; `buf` starts with it and its ranges index `buf`.
    fn request(&mut self, buf: &[u8], req: &Request) {
        let frame = &buf[..req.len];
        match req.command {
            Command::Quit => self.quit = true,
            Command::Version => self
                .reply(concat!("VERSION corelane-", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes()),
            c if c.is_refused() => {
                if !req.noreply {
                    let mut v = Vec::new();
                    error(
                        &mut v,
                        &format!("{} is not supported through a sharding proxy", c.name()),
                    );
                    self.reply(&v);
                }
            }
            c if c.is_retrieval() => self.retrieval(buf, req),
            _ => {
                let Some(key) = req.keys.first() else {
                    return self.reply(b"ERROR\r\n");
                };
                let server = self.locate(&buf[key.clone()]);
                let pipe = self.shards().primary(server, self.client).clone();
                let tag = self.replies.open(req.noreply);
                pipe.send(&self.replies, tag, ReplyKind::Line, |out| {
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
            .map(|k| self.locate(&buf[k.clone()]))
            .collect();
        let shards = self.shards();
        let Some(&first) = servers.first() else {
            return self.reply(b"ERROR\r\n");
        };
        if servers.iter().all(|&s| s == first) {
            let pipe = shards.primary(first, self.client).clone();
            let tag = self.replies.open(false);
            pipe.send(&self.replies, tag, ReplyKind::Retrieval, |out| {
                out.extend_from_slice(&buf[..req.len]);
            });
            return;
        }
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
            parts[p].1.push(k);
            order.push((p as u32, Box::from(&buf[req.keys[k].clone()])));
        }
        let seq = self
            .replies
            .open_split(parts.len() as u32, Multiget::new(order, parts.len()));
        for (p, (server, keys)) in parts.iter().enumerate() {
            let pipe = shards.primary(*server, self.client).clone();
            let tag = Tag {
                seq,
                part: p as u32,
            };
            pipe.send(&self.replies, tag, ReplyKind::Retrieval, |out| {
                codec::write_retrieval(buf, req, keys.iter().copied(), out);
            });
        }
    }
}
