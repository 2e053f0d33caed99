//! One client session of a `protocol = "mysql"` listener: the login (terminated by corelane,
//! see [`super::client`]), then each command routed to the session's primary connection or
//! to its replica connection, both opened lazily, and the reply relayed back packet by packet
//! without being decoded ([`super::reply`] finds its end and its status flags).
//!
//! Routing, in order (the README's MySQL section says the same for users):
//! 1. inside a transaction on the replica (`START TRANSACTION READ ONLY`), everything goes
//!    there; inside one on the primary (the server's `IN_TRANS` flag, or `AUTOCOMMIT` off),
//!    everything goes to the primary. Transaction state comes from the status flags of the
//!    servers' OK and EOF packets, never from statement text; after an ERR (which has no
//!    flags) from a statement that may have changed it, the primary keeps the session until a
//!    reply's flags say otherwise.
//! 2. a pinned session (temporary tables, LOCK TABLES, user variables read; pinning applies
//!    even when the statement ran inside a transaction) uses the primary;
//! 3. a `/* corelane:primary */` or `/* corelane:replica */` hint;
//! 4. the statement's class ([`super::classify`]): reads to a usable replica (healthy, not
//!    ejected, lag within the replica cluster's check), unless read-your-writes sends them to
//!    the primary; everything else to the primary.
//!
//! Session state (SET, USE, COM_INIT_DB, COM_SET_OPTION) runs on every open connection and is
//! replayed, in order, on a connection opened later. Prepared statements are mapped per
//! backend ([`super::stmt`]).
//!
//! Failures: a backend that cannot be reached or refuses the login gives the client an ERR
//! (the server's own ERR when it sent one). A connection found closed (or holding bytes
//! nobody asked for) before a statement is sent is replaced and the statement sent on the new
//! one; one lost after sending gives an ERR for the statement (a read is retried once) and is
//! reopened for the next. A session whose transaction, pinned state or half-sent reply was on
//! the lost connection is closed after the ERR, since what the client relies on is gone.
//!
//! Not here: packet formats, the classifier, TLS to backends, connection pooling across
//! sessions (each session has its own backend connections, as with ProxySQL's
//! `multiplexing=false`).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::backend::{Conn, Failure, Login};
use super::classify::{Class, Hint, Route, classify};
use super::client::{self, Client, End, LoggedIn, err_payload, ok_payload};
use super::packet::{self, HEADER, MAX_CHUNK};
use super::reply::{Expect, PrepareOk, ReplyReader, Step};
use super::stmt::{self, Role, Stmts};
use super::wire::{command, status};
use crate::config::model::{MysqlListener, NoReplica, ReadYourWrites};
use crate::config::table::RoutingTable;
use crate::io::buffers::VecPool;
use crate::io::detach::Detachable;
use crate::metrics::counters::OwnedGauge;
use crate::metrics::stats::EndpointStats;
use crate::metrics::stats::{EndpointCounters, ListenerCounters};
use crate::upstream::Cluster;
use crate::upstream::connect::connect;
use crate::worker::{Accepted, Worker};

mod park;

/// Session commands kept for replay, and their bytes; past either the session is pinned to the
/// primary.
const MAX_REPLAY: usize = 128;
const MAX_REPLAY_BYTES: usize = 256 * 1024;
/// Reply bytes gathered before they are written to the client.
const FLUSH_AT: usize = 64 * 1024;

pub async fn serve(worker: Rc<Worker>, conn: Accepted) {
    let (stream, held) = conn.split();
    let table = held.table.clone();
    let listener = &table.listeners[held.listener];
    let Some(ctx) = Ctx::new(&worker, &table, held.listener, held.peer) else {
        return;
    };
    let active = OwnedGauge::new(listener.stats.clone(), worker.id, |s, w| {
        &s.workers.get(w).active
    });
    let _ = stream.set_nodelay(true);
    let mut c = Client::new(stream, ctx.cfg.max_packet, &worker.vecs);
    let tls = listener.tls.clone();
    let scramble = client::greeting(ctx.cfg, tls.is_some(), c.out());
    let first = match tokio::time::timeout(ctx.login_timeout, async {
        c.flush().await?;
        client::read_response(&mut c).await
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return refuse(&mut c, e).await,
        Err(_) => return,
    };
    let kept = park::Kept {
        held,
        _active: active,
    };
    match (tls, client::is_ssl_request(&first)) {
        (Some(tls), true) => {
            if !c.rbuf.is_empty() {
                return;
            }
            // Boxed: the TLS handshake's state would otherwise be part of every plain
            // session's login task too.
            Box::pin(serve_tls(&worker, ctx, kept, c.stream, tls, scramble)).await;
        }
        _ => {
            if let Some(login) = log_in(&ctx, &mut c, &scramble, first).await {
                // The session goes on in a task of its own, built from what it owns: this
                // task's login state is not carried along.
                ctx.lc.bytes_out.add(std::mem::take(&mut c.sent));
                park::hand_over(&worker, kept, login, c.stream, None, c.rbuf);
            }
        }
    }
}

/// A session whose client asked for TLS: the handshake (rustls, over a socket that can leave
/// the TLS session while it is parked), then the login over it; the session then goes on in
/// a task of its own, as a plain one does.
async fn serve_tls(
    worker: &Rc<Worker>,
    ctx: Ctx<'_>,
    kept: park::Kept,
    stream: TcpStream,
    tls: std::sync::Arc<rustls::ServerConfig>,
    scramble: [u8; 20],
) {
    let handshake = ctx.login_timeout;
    let accepted = tokio::time::timeout(
        handshake,
        tokio_rustls::TlsAcceptor::from(tls).accept(Detachable::new(stream)),
    )
    .await;
    let Ok(Ok(stream)) = accepted else {
        tracing::debug!(peer = %ctx.peer, "mysql client TLS handshake failed");
        return;
    };
    let mut c = Client::new(Box::new(stream), ctx.cfg.max_packet, &ctx.worker.vecs);
    let r = match tokio::time::timeout(handshake, client::read_response(&mut c)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return refuse(&mut c, e).await,
        Err(_) => return,
    };
    if let Some(login) = log_in(&ctx, &mut c, &scramble, r).await {
        ctx.lc.bytes_out.add(std::mem::take(&mut c.sent));
        let Client {
            stream: mut tls,
            rbuf,
            ..
        } = c;
        if let Some(sock) = tls.get_mut().0.detach() {
            park::hand_over(worker, kept, login, sock, Some(tls), rbuf);
        }
    }
}

/// Sends a refusal's ERR, if it has one.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Client<'_, S>, e: End) {
    if let End::Refused(p) = e {
        let _ = c.send(2, &p).await;
    }
}

/// What a session needs from its listener and worker.
struct Ctx<'t> {
    worker: &'t Worker,
    cfg: &'t MysqlListener,
    /// The primary cluster and the replica cluster, by [`Role`].
    clusters: [Option<&'t Cluster>; 2],
    peer: SocketAddr,
    idle: Duration,
    /// Idle this long, the session may be parked (`park`): the listener's `park_after`, if
    /// under `idle`, while the worker does not drain and its parking lot works.
    park_after: Option<Duration>,
    /// How long a client has to log in (and to answer an auth switch): the listener's TLS
    /// `handshake_timeout`, else 10 s.
    login_timeout: Duration,
    /// This worker's counters of the listener.
    lc: &'t ListenerCounters,
}

impl<'t> Ctx<'t> {
    /// The context of a session on `table`'s listener `index`; `None` if it is not a mysql
    /// listener.
    fn new(
        worker: &'t Worker,
        table: &'t RoutingTable,
        index: usize,
        peer: SocketAddr,
    ) -> Option<Self> {
        let listener = &table.listeners[index];
        let cfg = listener.config.mysql.as_ref()?;
        let idle = listener.config.idle_timeout;
        Some(Ctx {
            worker,
            cfg,
            clusters: [
                Some(table.cluster_of(listener)),
                cfg.replicas.map(|i| &table.clusters[i]),
            ],
            peer,
            idle,
            park_after: listener
                .config
                .park_after
                .filter(|&p| p < idle && !worker.drain.started() && worker.park.open()),
            login_timeout: listener
                .config
                .tls
                .as_ref()
                .map_or(Duration::from_secs(10), |t| t.handshake_timeout),
            lc: listener.stats.workers.get(worker.id),
        })
    }
}

/// Checks the client's login; who logged in, or `None` (the client was refused, or took too
/// long).
async fn log_in<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx<'_>,
    c: &mut Client<'_, S>,
    scramble: &[u8; 20],
    first: client::Response,
) -> Option<LoggedIn> {
    let login = client::login(c, ctx.cfg, scramble, first, ctx.peer);
    match tokio::time::timeout(ctx.login_timeout, login).await {
        Ok(Ok(l)) => Some(l),
        Ok(Err(e)) => {
            refuse(c, e).await;
            None
        }
        Err(_) => None,
    }
}

/// One open backend connection.
struct Backend<'t> {
    conn: Conn,
    cluster: &'t Cluster,
    endpoint: usize,
    _active: OwnedGauge<EndpointStats>,
    /// This worker's counters of the endpoint: statements, bytes, failures.
    counters: &'t EndpointCounters,
    /// Server status after its last reply.
    status: u16,
    /// A statement that may have changed the transaction state failed (an ERR carries no
    /// status): treated as in a transaction until a reply says otherwise.
    unsure: bool,
    /// The last GTID this (replica) connection is known to have applied.
    gtid_seen: Option<String>,
    /// Why the connection is unusable, found while the session was parked (`park`): [`stale`]
    /// reports it at its next use, as it reports what it finds on a live connection.
    found_dead: Option<String>,
}

impl Backend<'_> {
    /// The longest wait for an exchange corelane starts itself (replay, GTID reads): the
    /// cluster's connect timeout, at least 1 s.
    fn own_limit(&self) -> Duration {
        self.cluster.connect_timeout.max(Duration::from_secs(1))
    }

    fn in_transaction(&self) -> bool {
        self.unsure || self.status & status::IN_TRANS != 0 || self.status & status::AUTOCOMMIT == 0
    }
}

/// How [`Session::serve`] returned, when the client did not fail.
enum Served {
    /// The session is over: the client quit, idled out, or the worker drains.
    Ended,
    /// The client has been idle since `since` for the listener's `park_after`.
    Idle { since: Instant },
}

/// How relaying one reply ended.
enum Relayed {
    Done {
        error: bool,
        prepare: Option<PrepareOk>,
    },
    /// The connection was found closed, or holding bytes nobody asked for (a server's error
    /// while idle), before the command was sent: a fresh one may take it.
    Stale(String),
    /// The backend failed before any of its reply reached the client.
    Lost(String),
    /// The backend failed or broke the protocol after part of its reply was sent.
    Broken(String),
    ClientGone,
}

struct Session<'t> {
    ctx: Ctx<'t>,
    login: LoggedIn,
    backends: [Option<Backend<'t>>; 2],
    st: State,
    /// A connection holding the session's transaction or pinned state was lost: the client
    /// connection is closed after the current command's reply.
    doomed: bool,
    /// The sequence id of a reply corelane writes itself to the command being handled: one
    /// past its last packet (1, unless the command took several packets).
    reply_seq: u8,
}

/// What a session has learnt from its commands, apart from its connections: all of it goes
/// with COM_RESET_CONNECTION and COM_CHANGE_USER.
#[derive(Default)]
pub(super) struct State {
    /// Session commands (whole command payloads) to replay on new connections; `true` marks a
    /// database change (only the last one is kept).
    replay: Vec<(bool, Box<[u8]>)>,
    pinned: bool,
    /// Where the previous statement ran (SHOW WARNINGS goes there).
    last: Role,
    /// A write ran on the primary since the session last left a transaction.
    wrote: bool,
    last_write: Option<Instant>,
    /// A write committed since `last_gtid` was read.
    gtid_stale: bool,
    last_gtid: Option<String>,
    stmts: Stmts,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Replica => "replica",
    }
}

/// `KILL` would reach a server with one of corelane's connection ids.
fn kill_refused() -> Vec<u8> {
    err_payload(
        1235,
        b"42000",
        "corelane: KILL is not supported through the proxy (its connection ids are not the servers')",
    )
}

fn unknown_stmt(id: u32, what: &str) -> Vec<u8> {
    err_payload(
        1243,
        b"HY000",
        &format!("Unknown prepared statement handler ({id}) given to {what}"),
    )
}

impl<'t> Session<'t> {
    fn replica_txn(&self) -> bool {
        self.backends[Role::Replica as usize]
            .as_ref()
            .is_some_and(|b| b.status & status::IN_TRANS != 0)
    }

    fn primary_txn(&self) -> bool {
        self.backends[Role::Primary as usize]
            .as_ref()
            .is_some_and(Backend::in_transaction)
    }

    /// The status flags a locally answered OK carries.
    fn status(&self) -> u16 {
        let b = if self.replica_txn() {
            &self.backends[Role::Replica as usize]
        } else {
            &self.backends[Role::Primary as usize]
        };
        b.as_ref().map_or(status::AUTOCOMMIT, |b| {
            b.status & (status::IN_TRANS | status::AUTOCOMMIT | status::IN_TRANS_READONLY)
        })
    }

    /// Where a statement of `class` should run. (A Pin statement pins the session once it has
    /// run: see [`Self::settle`].)
    fn want(&self, class: Class) -> Role {
        if self.replica_txn() {
            return Role::Replica;
        }
        if self.primary_txn() || self.st.pinned || class.hint == Some(Hint::Primary) {
            return Role::Primary;
        }
        if class.route == Route::Pin {
            return Role::Primary;
        }
        if self.ctx.clusters[Role::Replica as usize].is_none() {
            return Role::Primary;
        }
        if class.hint == Some(Hint::Replica) {
            return Role::Replica;
        }
        match class.route {
            Route::Read | Route::BeginReadOnly => {
                if let ReadYourWrites::Primary(d) = self.ctx.cfg.read_your_writes {
                    if self.st.last_write.is_some_and(|t| t.elapsed() < d) {
                        return Role::Primary;
                    }
                }
                Role::Replica
            }
            Route::Previous => self.st.last,
            _ => Role::Primary,
        }
    }

    /// Picks and opens the backend for a statement of `class`; `Err` is the ERR to answer.
    async fn route(&mut self, class: Class) -> Result<Role, Vec<u8>> {
        let role = self.want(class);
        if class.route == Route::Previous && self.backends[role as usize].is_some() {
            // Nothing may run there first: it would replace the warnings asked for.
            return Ok(role);
        }
        if role == Role::Replica {
            match self.replica().await {
                Ok(()) => return Ok(Role::Replica),
                Err(ReplicaOut::Behind) => {}
                Err(ReplicaOut::None(why)) => {
                    if self.ctx.cfg.no_replica == NoReplica::Error {
                        return Err(err_payload(
                            1105,
                            b"HY000",
                            &format!("corelane: no usable replica for this read ({why})"),
                        ));
                    }
                }
            }
        }
        Box::pin(self.open(Role::Primary))
            .await
            .map_err(|e| failure_payload(Role::Primary, &e))?;
        Ok(Role::Primary)
    }

    /// Makes the replica connection ready for a read: open, healthy, caught up with the
    /// session's writes when read-your-writes waits for GTIDs.
    async fn replica(&mut self) -> Result<(), ReplicaOut> {
        let r = Role::Replica as usize;
        if !self.replica_txn() {
            if let Some(b) = &self.backends[r] {
                if !b.cluster.endpoints[b.endpoint].health.usable() {
                    self.drop_backend(Role::Replica);
                }
            }
        }
        if self.backends[r].is_none() {
            Box::pin(self.open(Role::Replica))
                .await
                .map_err(|e| ReplicaOut::None(e.to_string()))?;
        }
        let ReadYourWrites::Gtid(wait) = self.ctx.cfg.read_your_writes else {
            return Ok(());
        };
        if self.st.gtid_stale {
            if !self.read_last_gtid().await {
                return Err(ReplicaOut::Behind);
            }
            self.st.gtid_stale = false;
        }
        let Some(gtid) = self.st.last_gtid.clone() else {
            return Ok(());
        };
        let in_txn = self.replica_txn();
        let Some(b) = self.backends[r].as_mut() else {
            return Err(ReplicaOut::Behind);
        };
        if b.gtid_seen.as_deref() == Some(gtid.as_str()) || in_txn {
            return Ok(());
        }
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{gtid}', {:.3})",
            wait.as_secs_f64()
        );
        let limit = wait + b.own_limit();
        let waited = tokio::time::timeout(limit, b.conn.scalar(&sql)).await;
        let waited =
            waited.unwrap_or_else(|_| Err(Failure::Io("MASTER_GTID_WAIT timed out".to_owned())));
        match waited {
            Ok(Some(v)) if v == "0" => {
                b.gtid_seen = Some(gtid);
                Ok(())
            }
            Ok(_) => Err(ReplicaOut::Behind),
            Err(e) => {
                tracing::debug!(error = %e, "MASTER_GTID_WAIT failed");
                self.drop_backend(Role::Replica);
                Err(ReplicaOut::Behind)
            }
        }
    }

    /// Opens the connection for `role` if it is not open: connect, log in as the user's
    /// backend user, replay the session's state. Callers box it: it is rare, and its state
    /// would otherwise sit in every session's task.
    async fn open(&mut self, role: Role) -> Result<(), Failure> {
        if self.backends[role as usize].is_some() {
            return Ok(());
        }
        let Some(cluster) = self.ctx.clusters[role as usize] else {
            return Err(Failure::Io("no replica cluster".to_owned()));
        };
        // The login's user comes from the same configuration as `ctx.cfg`.
        let Some(u) = self.ctx.cfg.users.get(self.login.user) else {
            return Err(Failure::Io(
                "the session's user is not configured".to_owned(),
            ));
        };
        let w = self.ctx.worker;
        let up = connect(cluster, w.id, &w.histograms, self.ctx.peer.ip())
            .await
            .map_err(|e| Failure::Io(format!("cluster {}: {}", cluster.name, e.reason())))?;
        let endpoint = up.endpoint;
        // A server that vanishes without a FIN or RST is found by keepalive probes (a reply
        // is never waited for with a timeout: queries may take long).
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&up.stream).set_tcp_keepalive(&keepalive);
        let mut conn = Conn::new(up.stream, self.ctx.cfg.max_packet);
        let login = Login {
            user: &u.backend_user,
            password: &u.backend_password,
            database: self.login.database.as_deref(),
            capabilities: self.login.capabilities,
            charset: Some(self.login.charset),
            max_packet: self.ctx.cfg.max_packet.min(u32::MAX as usize) as u32,
        };
        let replay = &self.st.replay;
        let setup = async {
            let mut st = conn.login(&login).await?;
            for (_, cmd) in replay {
                st = conn.run(cmd).await?;
            }
            Ok::<u16, Failure>(st)
        };
        let limit = cluster.connect_timeout.max(Duration::from_secs(1));
        let addr = cluster.endpoints[endpoint].addr;
        let status = match tokio::time::timeout(limit, setup).await {
            Ok(Ok(st)) => st,
            Ok(Err(e)) => {
                if let Failure::Io(why) = &e {
                    cluster.failed(endpoint, why);
                }
                tracing::debug!(%addr, error = %e, "mysql backend login failed");
                return Err(match e {
                    Failure::Io(why) => Failure::Io(format!("{addr}: {why}")),
                    server => server,
                });
            }
            Err(_) => {
                cluster.failed(endpoint, "login timed out");
                return Err(Failure::Io(format!("{addr}: login timed out")));
            }
        };
        cluster.succeeded(endpoint);
        self.backends[role as usize] = Some(Backend {
            conn,
            cluster,
            endpoint,
            _active: up.active,
            counters: cluster.endpoints[endpoint].stats.workers.get(w.id),
            status,
            unsure: false,
            gtid_seen: None,
            found_dead: None,
        });
        Ok(())
    }

    /// Closes the connection of `role`. If the session's transaction or pinned state was on
    /// it, the session is doomed: it ends after the command being handled.
    fn drop_backend(&mut self, role: Role) {
        self.doomed |= self.in_state(role);
        self.backends[role as usize] = None;
        self.st.stmts.forget(role);
    }

    /// Ends the session after [`Self::serve`]: a refusal's ERR to the client, QUIT to the
    /// backends.
    async fn end<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        served: Result<Served, End>,
    ) {
        if let Err(End::Refused(p)) = served {
            let _ = c.send(1, &p).await;
        }
        self.ctx.lc.bytes_out.add(std::mem::take(&mut c.sent));
        self.quit().await;
    }

    /// Sends QUIT to the open backends.
    async fn quit(&mut self) {
        for b in self.backends.iter_mut().flatten() {
            let _ =
                tokio::time::timeout(Duration::from_millis(100), b.conn.command(&[command::QUIT]))
                    .await;
        }
        self.backends = [None, None];
    }

    /// The session's command loop, from a client last active at `since`. It returns when the
    /// session ends, or when it may be parked: `park_after` has passed since the last
    /// command's reply, and nothing is buffered either way (the client holds no buffer).
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        since: Instant,
    ) -> Result<Served, End> {
        // The idle timer looks at the session at least every second (a drain, the idle
        // timeout) and about when it may be parked, but not more often than every 100 ms.
        let tick = self.ctx.idle.min(Duration::from_secs(1));
        let tick = self
            .ctx
            .park_after
            .map_or(tick, |p| tick.min(p.max(Duration::from_millis(100))));
        let idle = tokio::time::sleep(tick);
        tokio::pin!(idle);
        let mut last_active = since;
        loop {
            let f = tokio::select! {
                biased;
                f = c.next() => f?,
                () = &mut idle => {
                    let now = Instant::now();
                    if self.ctx.worker.drain.started() || now >= last_active + self.ctx.idle {
                        return Ok(Served::Ended);
                    }
                    let parkable = c.rbuf.capacity() == 0 && c.wbuf.is_empty();
                    if parkable && self.ctx.park_after.is_some_and(|p| now >= last_active + p) {
                        self.ctx.lc.bytes_out.add(std::mem::take(&mut c.sent));
                        return Ok(Served::Idle { since: last_active });
                    }
                    idle.as_mut().reset(now + tick);
                    continue;
                }
            };
            // The command is handled in place: the read buffer is lent to it, then given back
            // with whatever followed the command.
            self.reply_seq = f.last_seq.wrapping_add(1);
            let req = std::mem::take(&mut c.rbuf);
            let payload = packet::payload(&req, &f);
            let go_on = self.command(c, &req[..f.consumed], &payload).await;
            drop(payload);
            c.restore(req, f.consumed);
            self.ctx.lc.bytes_in.add(f.consumed as u64);
            self.ctx.lc.bytes_out.add(std::mem::take(&mut c.sent));
            // Idle time counts from the end of the last command (as the server's
            // wait_timeout does): a statement that ran longer is not idleness.
            last_active = Instant::now();
            if !go_on? || self.doomed {
                return Ok(Served::Ended);
            }
            if self.ctx.worker.drain.started() && !self.primary_txn() && !self.replica_txn() {
                return Ok(Served::Ended);
            }
        }
    }

    /// Handles one command; `Ok(false)` ends the session.
    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        raw: &[u8],
        payload: &[u8],
    ) -> Result<bool, End> {
        let Some(&cmd) = payload.first() else {
            return Err(End::Refused(err_payload(1047, b"08S01", "Unknown command")));
        };
        match cmd {
            command::QUIT => return Ok(false),
            command::PING => {
                c.send(self.reply_seq, &ok_payload(self.status())).await?;
            }
            command::QUERY => {
                let class = classify(&payload[1..]);
                return match class.route {
                    Route::Kill => {
                        c.send(self.reply_seq, &kill_refused()).await?;
                        Ok(true)
                    }
                    Route::Session | Route::Use => {
                        let is_use = class.route == Route::Use;
                        self.session_command(c, raw, payload, is_use, Expect::Results)
                            .await
                    }
                    _ => self.statement(c, raw, class, Expect::Results).await,
                };
            }
            command::INIT_DB | command::SET_OPTION => {
                let is_use = cmd == command::INIT_DB;
                return self
                    .session_command(c, raw, payload, is_use, Expect::One)
                    .await;
            }
            command::FIELD_LIST | command::STATISTICS => {
                let (route, expect) = if cmd == command::FIELD_LIST {
                    (Route::Read, Expect::Fields)
                } else {
                    (Route::Write, Expect::One)
                };
                let class = Class {
                    route,
                    hint: None,
                    opens: false,
                };
                return self.statement(c, raw, class, expect).await;
            }
            command::RESET_CONNECTION => {
                self.reset().await;
                c.send(self.reply_seq, &ok_payload(status::AUTOCOMMIT))
                    .await?;
            }
            command::CHANGE_USER => {
                let change = client::change_user(
                    c,
                    self.ctx.cfg,
                    payload,
                    &self.login,
                    self.reply_seq,
                    self.ctx.peer,
                );
                let login = tokio::time::timeout(self.ctx.login_timeout, change)
                    .await
                    .map_err(|_| End::Gone)??;
                self.reset().await;
                self.login = login;
            }
            command::STMT_PREPARE => return self.prepare(c, raw, payload).await,
            command::STMT_EXECUTE => return self.execute(c, payload).await,
            command::STMT_SEND_LONG_DATA => self.long_data(payload).await,
            command::STMT_CLOSE => self.close_stmt(payload).await,
            command::STMT_RESET => return self.reset_stmt(c, payload).await,
            command::STMT_FETCH => return self.fetch(c, payload).await,
            other => {
                c.send(
                    self.reply_seq,
                    &err_payload(
                        1047,
                        b"08S01",
                        &format!(
                            "corelane: command 0x{other:02x} is not supported through the proxy"
                        ),
                    ),
                )
                .await?;
            }
        }
        Ok(true)
    }

    /// Forgets the session's state and backend connections (COM_RESET_CONNECTION,
    /// COM_CHANGE_USER).
    async fn reset(&mut self) {
        self.quit().await;
        let mut stmts = std::mem::take(&mut self.st.stmts);
        // Ids go on counting: one from before the reset is not given to a new statement.
        stmts.clear();
        self.st = State {
            stmts,
            ..State::default()
        };
    }

    /// A statement (or FIELD_LIST, STATISTICS) in `raw`: route it, relay the reply.
    async fn statement<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        raw: &[u8],
        class: Class,
        expect: Expect,
    ) -> Result<bool, End> {
        let mut retried = false;
        loop {
            let role = match self.route(class).await {
                Ok(r) => r,
                Err(e) => {
                    c.send(self.reply_seq, &e).await?;
                    return Ok(true);
                }
            };
            let r = self.relay(c, role, raw, expect, None, true).await;
            // A connection that died while idle: once more on a fresh one, for any statement
            // if nothing was sent, for a read if it may have been.
            let again = match &r {
                Relayed::Stale(_) => true,
                Relayed::Lost(_) => class.route == Route::Read,
                _ => false,
            };
            if again && !retried && !self.in_state(role) {
                retried = true;
                self.drop_backend(role);
                continue;
            }
            return self.settle(c, role, class, r).await;
        }
    }

    /// Whether the connection of `role` holds state the client relies on (a transaction,
    /// pinned session state).
    fn in_state(&self, role: Role) -> bool {
        match role {
            Role::Primary => self.primary_txn() || self.st.pinned,
            Role::Replica => self.replica_txn(),
        }
    }

    /// Book-keeping after a reply: where it ran, writes for read-your-writes, lost backends.
    async fn settle<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        role: Role,
        class: Class,
        r: Relayed,
    ) -> Result<bool, End> {
        match r {
            Relayed::Done { error, .. } => {
                self.st.last = role;
                if class.route == Route::Pin {
                    // Even inside a transaction: temporary tables and locks outlive it.
                    self.st.pinned = true;
                }
                let may_write = !matches!(
                    class.route,
                    Route::Read | Route::Previous | Route::Session | Route::Use
                );
                if role == Role::Primary && may_write {
                    // A failed statement may still have written (a multi-statement, CALL).
                    self.st.wrote = true;
                    if error && class.opens {
                        if let Some(b) = self.backends[role as usize].as_mut() {
                            b.unsure = true;
                        }
                    }
                }
                if self.st.wrote && !self.primary_txn() {
                    self.st.wrote = false;
                    self.written();
                }
                Ok(true)
            }
            Relayed::Lost(why) | Relayed::Stale(why) => {
                let fatal = self.in_state(role);
                self.drop_backend(role);
                let msg = format!(
                    "corelane: lost the connection to the {} during this statement: {why}{}",
                    role_name(role),
                    if fatal {
                        "; the session's transaction or state on it is gone"
                    } else {
                        ""
                    }
                );
                c.send(self.reply_seq, &err_payload(2013, b"HY000", &msg))
                    .await?;
                Ok(!fatal)
            }
            Relayed::Broken(why) => {
                tracing::debug!(peer = %self.ctx.peer, backend = role_name(role), %why, "mysql reply broken off; closing the client");
                Ok(false)
            }
            Relayed::ClientGone => Err(End::Gone),
        }
    }

    /// A write has been committed: note when, or that its GTID is to be read (lazily, before
    /// the next replica read: reading it now would replace the write's warnings).
    fn written(&mut self) {
        match self.ctx.cfg.read_your_writes {
            ReadYourWrites::Off => {}
            ReadYourWrites::Primary(_) => self.st.last_write = Some(Instant::now()),
            ReadYourWrites::Gtid(_) => self.st.gtid_stale = true,
        }
    }

    /// Reads the GTID of the session's last write from the primary; `false` if it cannot be
    /// known (the read must then go to the primary).
    async fn read_last_gtid(&mut self) -> bool {
        let Some(b) = self.backends[Role::Primary as usize].as_mut() else {
            return false;
        };
        let limit = b.own_limit();
        let read = tokio::time::timeout(limit, b.conn.scalar("SELECT @@last_gtid")).await;
        match read.unwrap_or_else(|_| Err(Failure::Io("timed out".to_owned()))) {
            Ok(Some(g))
                if !g.is_empty()
                    && g.bytes()
                        .all(|c| c.is_ascii_digit() || c == b'-' || c == b',') =>
            {
                self.st.last_gtid = Some(g);
                true
            }
            // Nothing was logged (the statement changed no row).
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "reading @@last_gtid failed");
                self.drop_backend(Role::Primary);
                false
            }
        }
    }

    /// SET, USE, COM_INIT_DB, COM_SET_OPTION: run on every open connection (the primary's
    /// reply goes to the client) and kept for replay.
    async fn session_command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        raw: &[u8],
        payload: &[u8],
        is_use: bool,
        expect: Expect,
    ) -> Result<bool, End> {
        if self.backends.iter().all(Option::is_none) {
            if let Err(e) = Box::pin(self.open(Role::Primary)).await {
                c.send(self.reply_seq, &failure_payload(Role::Primary, &e))
                    .await?;
                return Ok(true);
            }
        }
        let lead = if self.backends[Role::Primary as usize].is_some() {
            Role::Primary
        } else {
            Role::Replica
        };
        let r = self.relay_fresh(c, lead, raw, expect, None).await;
        let ok = matches!(r, Relayed::Done { error: false, .. });
        let class = Class {
            route: Route::Session,
            hint: None,
            opens: false,
        };
        let go_on = self.settle(c, lead, class, r).await?;
        if !ok {
            return Ok(go_on);
        }
        let other = match lead {
            Role::Primary => Role::Replica,
            Role::Replica => Role::Primary,
        };
        if let Some(b) = self.backends[other as usize].as_mut() {
            let limit = b.own_limit();
            let ran = tokio::time::timeout(limit, b.conn.run(payload)).await;
            if let Err(e) = ran.unwrap_or_else(|_| Err(Failure::Io("timed out".to_owned()))) {
                tracing::warn!(peer = %self.ctx.peer, backend = role_name(other), error = %e, "session command failed on one backend only; closing that connection");
                self.drop_backend(other);
            }
        }
        let bytes: usize = self.st.replay.iter().map(|(_, p)| p.len()).sum();
        if self.st.replay.len() >= MAX_REPLAY || bytes + payload.len() > MAX_REPLAY_BYTES {
            self.st.pinned = true;
        } else {
            if is_use {
                self.st.replay.retain(|(u, _)| !u);
            } else {
                self.st.replay.retain(|(_, p)| **p != *payload);
            }
            self.st.replay.push((is_use, payload.into()));
        }
        Ok(go_on)
    }

    /// [`Self::relay`], once more on a fresh connection if the one of `role` is found closed
    /// before anything was sent and held nothing the client relies on.
    async fn relay_fresh<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        role: Role,
        raw: &[u8],
        expect: Expect,
        prepare_id: Option<u32>,
    ) -> Relayed {
        let held = self.in_state(role);
        let r = self.relay(c, role, raw, expect, prepare_id, true).await;
        if matches!(r, Relayed::Stale(_)) && !held {
            self.drop_backend(role);
            if Box::pin(self.open(role)).await.is_ok() {
                return self.relay(c, role, raw, expect, prepare_id, true).await;
            }
        }
        r
    }

    /// Sends `raw` (whole packets) to the backend of `role` and relays its reply to the client
    /// (or drops it, with `to_client` false). With `prepare_id`, the statement id of a
    /// COM_STMT_PREPARE OK is rewritten to it.
    async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        role: Role,
        raw: &[u8],
        expect: Expect,
        prepare_id: Option<u32>,
        to_client: bool,
    ) -> Relayed {
        let Some(b) = self.backends[role as usize].as_mut() else {
            return Relayed::Lost("not connected".to_owned());
        };
        relay(
            b,
            c,
            raw,
            expect,
            prepare_id,
            to_client,
            &self.ctx.worker.vecs,
        )
        .await
    }

    async fn prepare<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        raw: &[u8],
        payload: &[u8],
    ) -> Result<bool, End> {
        if self.st.stmts.is_full() {
            let msg = format!(
                "Can't create more than max_prepared_stmt_count statements (current value: {})",
                stmt::MAX_STATEMENTS
            );
            c.send(self.reply_seq, &err_payload(1461, b"42000", &msg))
                .await?;
            return Ok(true);
        }
        let mut class = classify(&payload[1..]);
        if class.route == Route::Kill {
            self.st.stmts.prepare_failed();
            c.send(self.reply_seq, &kill_refused()).await?;
            return Ok(true);
        }
        if matches!(class.route, Route::Session | Route::Use) {
            // Executed any number of times with any values, it cannot be replayed: the
            // session stays on the primary once it runs.
            class.route = Route::Pin;
        }
        let role = match self.route(class).await {
            Ok(r) => r,
            Err(e) => {
                self.st.stmts.prepare_failed();
                c.send(self.reply_seq, &e).await?;
                return Ok(true);
            }
        };
        let id = self.st.stmts.peek_next();
        let r = self
            .relay_fresh(c, role, raw, Expect::Prepare, Some(id))
            .await;
        if let Relayed::Done {
            prepare: Some(p),
            error: false,
            ..
        } = &r
        {
            self.st
                .stmts
                .add(payload, class, p.params, role, p.statement);
        } else {
            self.st.stmts.prepare_failed();
        }
        let read = Class {
            route: Route::Read,
            hint: None,
            opens: false,
        };
        self.settle(c, role, read, r).await
    }

    /// Makes sure statement `id` is prepared on `role`'s connection (which is open); returns
    /// its id there.
    async fn prepared_on(&mut self, id: u32, role: Role) -> Result<u32, Vec<u8>> {
        let Some(st) = self.st.stmts.get_mut(id) else {
            return Err(unknown_stmt(id, "mysqld_stmt_execute"));
        };
        if let Some(b) = st.on[role as usize] {
            return Ok(b);
        }
        let mut raw = Vec::with_capacity(st.prepare.len() + HEADER);
        packet::write(&mut raw, 0, &st.prepare);
        let Some(b) = self.backends[role as usize].as_mut() else {
            return Err(err_payload(
                2013,
                b"HY000",
                "corelane: backend not connected",
            ));
        };
        let mut sink = Client::new(tokio::io::empty(), 0, &self.ctx.worker.vecs);
        match relay(
            b,
            &mut sink,
            &raw,
            Expect::Prepare,
            None,
            false,
            &self.ctx.worker.vecs,
        )
        .await
        {
            Relayed::Done {
                prepare: Some(p),
                error: false,
                ..
            } => {
                if let Some(st) = self.st.stmts.get_mut(id) {
                    st.on[role as usize] = Some(p.statement);
                    st.typed[role as usize] = false;
                }
                Ok(p.statement)
            }
            Relayed::Done { .. } => Err(err_payload(
                1105,
                b"HY000",
                &format!(
                    "corelane: preparing the statement on the {} failed",
                    role_name(role)
                ),
            )),
            Relayed::Lost(why) | Relayed::Stale(why) | Relayed::Broken(why) => {
                self.drop_backend(role);
                Err(err_payload(
                    2013,
                    b"HY000",
                    &format!(
                        "corelane: lost the connection to the {}: {why}",
                        role_name(role)
                    ),
                ))
            }
            Relayed::ClientGone => Err(Vec::new()),
        }
    }

    async fn execute<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        payload: &[u8],
    ) -> Result<bool, End> {
        let id = stmt::id_of(payload).unwrap_or(0);
        let Some(st) = self.st.stmts.get_mut(id) else {
            c.send(self.reply_seq, &unknown_stmt(id, "mysqld_stmt_execute"))
                .await?;
            return Ok(true);
        };
        let (class, forced) = (st.class, st.long_data.take());
        if forced.is_some_and(|r| r == Role::Replica && self.want(class) == Role::Primary) {
            // The long data went to the replica, and since then a transaction began: the
            // execute may not run there, and the data cannot be moved.
            let msg = "corelane: this statement's long data was sent to the replica before a transaction began; send it again";
            c.send(self.reply_seq, &err_payload(1105, b"HY000", msg))
                .await?;
            return Ok(true);
        }
        let mut retried = forced.is_some(); // long data cannot be sent again
        loop {
            let role = match forced {
                Some(r) => r,
                None => match self.route(class).await {
                    Ok(r) => r,
                    Err(e) => {
                        c.send(self.reply_seq, &e).await?;
                        return Ok(true);
                    }
                },
            };
            let held = self.in_state(role);
            let r = self.execute_on(c, payload, id, role).await?;
            if matches!(r, Relayed::Stale(_)) && !retried && !held {
                // Found closed before anything was sent: prepare and send it on a fresh one.
                retried = true;
                self.drop_backend(role);
                continue;
            }
            return self.settle(c, role, class, r).await;
        }
    }

    /// Sends the COM_STMT_EXECUTE `payload` of statement `id` to `role` (preparing it there
    /// first if needed) and relays the reply.
    async fn execute_on<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        payload: &[u8],
        id: u32,
        role: Role,
    ) -> Result<Relayed, End> {
        let backend_id = match self.prepared_on(id, role).await {
            Ok(b) => b,
            Err(e) if e.is_empty() => return Err(End::Gone),
            Err(e) => {
                // Answered here; `Done` with an error lets the caller settle the rest.
                c.send(self.reply_seq, &e).await?;
                return Ok(Relayed::Done {
                    error: true,
                    prepare: None,
                });
            }
        };
        let Some(st) = self.st.stmts.get_mut(id) else {
            return Err(End::Gone);
        };
        let mut p = payload.to_vec();
        if let Some(t) = stmt::bound_types(payload, st.params) {
            // New types: a backend that saw older ones must be sent these.
            st.types = Some(t.into());
            st.typed = [false; 2];
            st.typed[role as usize] = true;
        } else if !st.typed[role as usize] {
            if let Some(with) = st
                .types
                .as_deref()
                .and_then(|t| stmt::with_types(payload, st.params, t))
            {
                p = with;
                st.typed[role as usize] = true;
            }
        }
        st.last = Some(role);
        stmt::set_id(&mut p, backend_id);
        let mut raw = Vec::with_capacity(p.len() + HEADER);
        packet::write(&mut raw, 0, &p);
        Ok(self.relay(c, role, &raw, Expect::Results, None, true).await)
    }

    async fn long_data(&mut self, payload: &[u8]) {
        let id = stmt::id_of(payload).unwrap_or(0);
        let Some(st) = self.st.stmts.get_mut(id) else {
            return; // no reply exists for this command; the execute will report it
        };
        let (class, forced) = (st.class, st.long_data);
        let role = match forced {
            Some(r) => r,
            None => match self.route(class).await {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let Ok(backend_id) = self.prepared_on(id, role).await else {
            return;
        };
        if let Some(st) = self.st.stmts.get_mut(id) {
            st.long_data = Some(role);
        }
        let p = stmt::with_id(payload, backend_id);
        if let Some(b) = self.backends[role as usize].as_mut() {
            b.conn.seq = 0;
            if b.conn.write(&p).await.is_err() {
                self.drop_backend(role);
            }
        }
    }

    async fn close_stmt(&mut self, payload: &[u8]) {
        let id = stmt::id_of(payload).unwrap_or(0);
        let Some(st) = self.st.stmts.remove(id) else {
            return;
        };
        for role in [Role::Primary, Role::Replica] {
            if let (Some(bid), Some(b)) =
                (st.on[role as usize], self.backends[role as usize].as_mut())
            {
                let p = stmt::with_id(payload, bid);
                b.conn.seq = 0;
                if b.conn.write(&p).await.is_err() {
                    self.drop_backend(role);
                }
            }
        }
    }

    async fn reset_stmt<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        payload: &[u8],
    ) -> Result<bool, End> {
        let id = stmt::id_of(payload).unwrap_or(0);
        let Some(st) = self.st.stmts.get_mut(id) else {
            c.send(self.reply_seq, &unknown_stmt(id, "mysqld_stmt_reset"))
                .await?;
            return Ok(true);
        };
        st.long_data = None;
        let on = st.on;
        let mut reply = ok_payload(self.status());
        for role in [Role::Primary, Role::Replica] {
            if let (Some(bid), Some(b)) = (on[role as usize], self.backends[role as usize].as_mut())
            {
                let p = stmt::with_id(payload, bid);
                let limit = b.own_limit();
                let ran = tokio::time::timeout(limit, b.conn.run(&p)).await;
                match ran.unwrap_or_else(|_| Err(Failure::Io("timed out".to_owned()))) {
                    Ok(_) => {}
                    Err(Failure::Server {
                        code,
                        state,
                        message,
                    }) => {
                        reply = err_payload(code, &state, &message);
                    }
                    Err(Failure::Io(_)) => self.drop_backend(role),
                }
            }
        }
        c.send(self.reply_seq, &reply).await?;
        Ok(true)
    }

    async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        c: &mut Client<'_, S>,
        payload: &[u8],
    ) -> Result<bool, End> {
        let id = stmt::id_of(payload).unwrap_or(0);
        let (role, bid) = match self.st.stmts.get_mut(id) {
            Some(st) => match st.last.and_then(|r| Some((r, st.on[r as usize]?))) {
                Some(x) => x,
                None => {
                    c.send(
                        self.reply_seq,
                        &err_payload(1421, b"HY000", "The statement has no open cursor"),
                    )
                    .await?;
                    return Ok(true);
                }
            },
            None => {
                c.send(self.reply_seq, &unknown_stmt(id, "mysqld_stmt_fetch"))
                    .await?;
                return Ok(true);
            }
        };
        let p = stmt::with_id(payload, bid);
        let mut raw = Vec::with_capacity(p.len() + HEADER);
        packet::write(&mut raw, 0, &p);
        let r = self.relay(c, role, &raw, Expect::Rows, None, true).await;
        let read = Class {
            route: Route::Read,
            hint: None,
            opens: false,
        };
        self.settle(c, role, read, r).await
    }
}

/// Why the replica cannot take a read.
enum ReplicaOut {
    /// None is usable (down, lagging, unreachable): `no_replica` decides.
    None(String),
    /// It has not applied the session's last write in time: the primary takes the read.
    Behind,
}

/// The ERR for a backend that could not be opened.
fn failure_payload(role: Role, e: &Failure) -> Vec<u8> {
    match e {
        Failure::Server {
            code,
            state,
            message,
        } => err_payload(*code, state, message),
        Failure::Io(why) => err_payload(
            1105,
            b"HY000",
            &format!("corelane: the {} is unavailable: {why}", role_name(role)),
        ),
    }
}

/// Relays one command's reply from `b` to `c`.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    b: &mut Backend<'_>,
    c: &mut Client<'_, S>,
    raw: &[u8],
    expect: Expect,
    prepare_id: Option<u32>,
    to_client: bool,
    pool: &VecPool,
) -> Relayed {
    if let Some(why) = stale(b) {
        return Relayed::Stale(why);
    }
    if b.conn.buf.capacity() == 0 {
        b.conn.buf = pool.take();
    }
    b.counters.requests.inc();
    b.counters.bytes_out.add(raw.len() as u64);
    let r = relay_reply(b, c, raw, expect, prepare_id, to_client, pool).await;
    if matches!(r, Relayed::Lost(_) | Relayed::Stale(_) | Relayed::Broken(_)) {
        b.counters.request_errors.inc();
    }
    r
}

/// Whether a connection about to be sent a command is already dead or out of step: closed by
/// the server, or holding bytes nobody asked for (MySQL 8 sends an ERR before it closes an
/// idle connection). Costs no system call unless the socket was seen readable.
fn stale(b: &mut Backend<'_>) -> Option<String> {
    if let Some(why) = b.found_dead.take() {
        return Some(why);
    }
    if !b.conn.buf.is_empty() {
        return Some(UNASKED.to_owned());
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match b.conn.stream.poll_read_ready(&mut cx) {
        std::task::Poll::Pending => None,
        std::task::Poll::Ready(Err(e)) => Some(e.to_string()),
        std::task::Poll::Ready(Ok(())) => probe_result(b.conn.stream.try_read(&mut [0u8; 64])),
    }
}

/// Why a connection that holds bytes nobody asked for is not used.
const UNASKED: &str = "the server sent bytes nobody asked for";

/// What a read (or peek) on an idle backend connection says about it: `None` if it is fine
/// (nothing to read yet).
fn probe_result(read: std::io::Result<usize>) -> Option<String> {
    match read {
        Ok(0) => Some("the server closed the connection".to_owned()),
        Ok(_) => Some("the server sent bytes nobody asked for (an error while idle?)".to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(e.to_string()),
    }
}

async fn relay_reply<S: AsyncRead + AsyncWrite + Unpin>(
    b: &mut Backend<'_>,
    c: &mut Client<'_, S>,
    raw: &[u8],
    expect: Expect,
    prepare_id: Option<u32>,
    to_client: bool,
    pool: &VecPool,
) -> Relayed {
    if let Err(e) = b.conn.write_raw(raw).await {
        return Relayed::Lost(e.to_string());
    }
    // On a failure before anything was sent, the client's buffer goes back to this length
    // (an ERR, or a retry's reply, follows).
    let keep = c.wbuf.len();
    let mut reader = ReplyReader::new(expect);
    let mut sent = false;
    let mut first = true;
    let mut prepare = None;
    loop {
        let mut at = 0;
        let mut done = None;
        while done.is_none() {
            let f = match packet::frame(&b.conn.buf[at..], b.conn.max_packet) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return broken(c, sent, keep, e.to_string()),
            };
            let start = at;
            at += f.consumed;
            if first && expect == Expect::Prepare && b.conn.buf.get(start + HEADER) == Some(&0) {
                prepare = PrepareOk::parse(&b.conn.buf[start + HEADER..at]).ok();
                if let Some(id) = prepare_id {
                    let p = &mut b.conn.buf[start + HEADER..at];
                    stmt::set_id(p, id);
                }
            }
            first = false;
            let head = &b.conn.buf[start + HEADER..(start + HEADER + f.len.min(MAX_CHUNK)).min(at)];
            match reader.feed(head, f.len) {
                Ok(Step::More) => {}
                Ok(Step::Done { status, error }) => done = Some((status, error)),
                Err(e) => return broken(c, sent, keep, e.to_string()),
            }
        }
        b.counters.bytes_in.add(at as u64);
        if to_client {
            c.out().extend_from_slice(&b.conn.buf[..at]);
        }
        b.conn.buf.drain(..at);
        if let Some((status, error)) = done {
            if !b.conn.buf.is_empty() {
                let why = "the server sent more than its reply".to_owned();
                return broken(c, sent, keep, why);
            }
            pool.put(&mut b.conn.buf);
            if let Some(s) = status {
                b.status = s;
                b.unsure = false;
            }
            if to_client && c.flush().await.is_err() {
                return Relayed::ClientGone;
            }
            return Relayed::Done { error, prepare };
        }
        if to_client && c.wbuf.len() >= FLUSH_AT {
            sent = true;
            if c.flush().await.is_err() {
                return Relayed::ClientGone;
            }
        }
        if let Err(e) = b.conn.fill().await {
            return broken(c, sent, keep, e.to_string());
        }
    }
}

/// A failed relay: `Broken` if part of the reply reached the client, else `Lost`, with what was
/// queued for the client since `keep` taken back.
fn broken<S>(c: &mut Client<'_, S>, sent: bool, keep: usize, why: String) -> Relayed {
    if sent {
        Relayed::Broken(why)
    } else {
        c.wbuf.truncate(keep);
        Relayed::Lost(why)
    }
}
