//! Parking an idle MySQL session (`worker::park`). A client connection whose last
//! command was answered at least its listener's `park_after` ago, with nothing buffered either
//! way, leaves its task: what the session knows (its login, its [`State`], each backend
//! connection's socket and status) waits in a box in the worker's parking lot, and the
//! client's socket in the lot's epoll set. The backend sockets leave the runtime too, unwatched
//! (a live idle session does not watch them either). When the client sends again or closes,
//! the session is rebuilt around the same connections and carries on: its transaction, its
//! prepared statements and its session variables are where they were. It is also rebuilt when
//! the worker drains (it then ends as a live idle session does, within a second, COM_QUIT to
//! its backends) and if the lot fails (it then stays live).
//!
//! A backend connection that died while parked (the server closed it, or sent an error before
//! closing it) is found on waking with one `peek` each and handled at its next use exactly as
//! on a live session (`super::stale`): replaced, or, if the session's transaction or pinned
//! state was on it, the statement gets an ERR and the session ends. (The runtime would
//! usually report it before the client's command is read, since a woken session first waits on
//! its freshly registered client socket; the `peek` makes that certain rather than likely.)
//! At the idle deadline a parked session's backends get COM_QUIT, as a live session's do.
//!
//! A TLS client parks the same way: its TLS session (keys, sequence numbers, rustls's state)
//! waits in the box with its socket taken out of it (`io::detach`, as for HTTP), once whatever
//! rustls still had for the client has been written. At the idle deadline it is sent a
//! `close_notify`, as a live TLS session that ends is.
//!
//! The same parts start a session's task after its login ([`hand_over`]): the session is
//! served by [`run`] in a task of its own from then on, whether it has just logged in or has
//! just woken, and the login's task (with the greeting's and the login's state) ends.
//!
//! Not here: the command loop (`super::Session::serve`).

use std::future::Future;
use std::io::Write;
use std::rc::Rc;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::super::backend::Conn;
use super::super::client::{Client, LoggedIn};
use super::super::stmt::Role;
use super::super::wire::command;
use super::{Backend, Ctx, Served, Session, State, UNASKED, probe_result};
use crate::io::detach::Detachable;
use crate::metrics::counters::OwnedGauge;
use crate::metrics::stats::{EndpointStats, ListenerStats};
use crate::worker::park::{ResumeClient, Sleeper};
use crate::worker::{Held, Worker};

/// What a session holds for its whole life, live or parked: its place under the
/// listener's limits and among the worker's connections, and its count as active.
pub(super) struct Kept {
    pub held: Held,
    pub _active: OwnedGauge<ListenerStats>,
}

/// A session apart from its task: what it keeps while parked, and what a task of its own is
/// built from when it logs in or wakes.
struct Parked {
    kept: Kept,
    /// Counts the session as parked while it is (`None` when it is only handed to a task).
    _parked: Option<OwnedGauge<ListenerStats>>,
    login: LoggedIn,
    st: State,
    backends: [Option<Dormant>; 2],
    /// A TLS client's session, its socket detached (boxed: a plain session does not pay for
    /// it).
    tls: Option<Box<TlsClient>>,
    /// The client's last command came then: the idle timeout counts from here.
    since: Instant,
}

/// A TLS client connection of a mysql listener: its socket can be taken out from under the
/// TLS session while the session is parked (`io::detach`).
pub(super) type TlsClient = tokio_rustls::server::TlsStream<Detachable<TcpStream>>;

/// How long a TLS client has to take what rustls still has for it (a session ticket) before
/// its session parks, and its `close_notify` when the session ends.
const TLS_GRACE: Duration = Duration::from_millis(100);

/// A client transport a session can be served on and parked from: a socket, or TLS over one.
trait Transport: AsyncRead + AsyncWrite + Unpin {
    /// Whether all that was for the client has left, so that the session may park. Over TLS
    /// what rustls still holds is flushed first, for [`TLS_GRACE`] at most: `Ok(false)` is a
    /// client that is not reading, whose session stays live.
    async fn settled(&mut self) -> std::io::Result<bool>;

    /// The socket, out of the runtime, and the TLS session that goes with it.
    fn part(self) -> std::io::Result<(std::net::TcpStream, Option<Box<TlsClient>>)>;

    /// The session ended: a TLS client is told with a `close_notify` (so that it sees a clean
    /// end rather than a truncation); a plain one just sees the close.
    async fn close(&mut self);
}

impl Transport for TcpStream {
    async fn settled(&mut self) -> std::io::Result<bool> {
        Ok(true)
    }

    fn part(self) -> std::io::Result<(std::net::TcpStream, Option<Box<TlsClient>>)> {
        Ok((self.into_std()?, None))
    }

    async fn close(&mut self) {}
}

impl Transport for Box<TlsClient> {
    async fn settled(&mut self) -> std::io::Result<bool> {
        match tokio::time::timeout(TLS_GRACE, self.flush()).await {
            Ok(Ok(())) => Ok(!self.get_ref().1.wants_write()),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    fn part(mut self) -> std::io::Result<(std::net::TcpStream, Option<Box<TlsClient>>)> {
        let sock = self.get_mut().0.detach();
        let sock = sock.ok_or(std::io::ErrorKind::NotConnected)?;
        Ok((sock.into_std()?, Some(self)))
    }

    async fn close(&mut self) {
        let _ = tokio::time::timeout(TLS_GRACE, self.shutdown()).await;
    }
}

/// A backend connection of a parked session: [`Backend`] without what the table gives back.
struct Dormant {
    sock: std::net::TcpStream,
    seq: u8,
    endpoint: usize,
    active: OwnedGauge<EndpointStats>,
    status: u16,
    unsure: bool,
    gtid_seen: Option<Box<str>>,
    found_dead: Option<Box<str>>,
}

/// Starts the task of a session that has just logged in, with its client's socket (and the TLS
/// session it was taken out of, for a TLS client) and what the client sent after its login
/// (`rbuf`). The login's task then ends: what it held for the greeting and the login is not
/// carried through the session's life.
pub(super) fn hand_over(
    worker: &Rc<Worker>,
    kept: Kept,
    login: LoggedIn,
    stream: TcpStream,
    tls: Option<Box<TlsClient>>,
    rbuf: Vec<u8>,
) {
    let p = Box::new(Parked {
        kept,
        _parked: None,
        login,
        st: State::default(),
        backends: [None, None],
        tls,
        since: Instant::now(),
    });
    tokio::task::spawn_local(run(worker.clone(), p, stream, rbuf));
}

/// A session's task: the session rebuilt from its parts, served until it ends or is parked.
/// (A function returning an `async` block rather than an `async fn`: an `async fn` keeps its
/// arguments twice in its future, as arguments and as the body's locals.)
#[allow(clippy::manual_async_fn)]
fn run(
    worker: Rc<Worker>,
    p: Box<Parked>,
    stream: TcpStream,
    rbuf: Vec<u8>,
) -> impl Future<Output = ()> {
    async move {
        let table = p.kept.held.table.clone();
        let Some(ctx) = Ctx::new(&worker, &table, p.kept.held.listener, p.kept.held.peer) else {
            return give_up(&p.backends, &"not a mysql listener");
        };
        let Some((kept, s, tls, since)) = unpack(ctx, p, worker.id) else {
            return;
        };
        match tls {
            None => serve(&worker, kept, s, stream, since, rbuf).await,
            Some(mut tls) => {
                tls.get_mut().0.attach(stream);
                serve(&worker, kept, s, tls, since, rbuf).await
            }
        }
    }
}

/// Serves the session on its client's transport until it ends (or parks it).
#[allow(clippy::manual_async_fn)]
fn serve<'a, S: Transport + 'a>(
    worker: &'a Rc<Worker>,
    kept: Kept,
    mut s: Session<'a>,
    stream: S,
    since: Instant,
    rbuf: Vec<u8>,
) -> impl Future<Output = ()> + 'a {
    async move {
        let mut c = Client::new(stream, s.ctx.cfg.max_packet, &worker.vecs);
        c.rbuf = rbuf;
        let mut since = since;
        loop {
            match s.serve(&mut c, since).await {
                Ok(Served::Idle { since: idle }) => match c.stream.settled().await {
                    Ok(true) => {
                        match c.stream.part() {
                            Ok((sock, tls)) => park(worker, kept, s, sock, tls, idle),
                            Err(e) => {
                                tracing::debug!(peer = %s.ctx.peer, error = %e, "could not park a mysql session; closing it");
                                s.quit().await;
                            }
                        }
                        return;
                    }
                    // A TLS client not reading what it was sent: the session stays live and
                    // tries again at its next tick.
                    Ok(false) => since = idle,
                    Err(_) => return s.quit().await,
                },
                served => {
                    s.end(&mut c, served).await;
                    c.stream.close().await;
                    return;
                }
            }
        }
    }
}

/// The session again from its parts, with its server connections back in the runtime; `None`
/// if the runtime will not take one back (which takes running out of kernel memory): the
/// session then ends, COM_QUIT sent to the servers it can still reach.
fn unpack<'t>(
    ctx: Ctx<'t>,
    p: Box<Parked>,
    worker: usize,
) -> Option<(Kept, Session<'t>, Option<Box<TlsClient>>, Instant)> {
    let Parked {
        kept,
        _parked,
        login,
        st,
        mut backends,
        tls,
        since,
    } = *p;
    drop(_parked);
    let mut s = Session {
        ctx,
        login,
        backends: [None, None],
        st,
        doomed: false,
        reply_seq: 1,
    };
    for role in [Role::Primary, Role::Replica] {
        let Some(d) = backends[role as usize].take() else {
            continue;
        };
        let Some(cluster) = s.ctx.clusters[role as usize] else {
            continue;
        };
        let found_dead = d
            .found_dead
            .map(String::from)
            .or_else(|| probe_result(d.sock.peek(&mut [0u8; 1])));
        let stream = match TcpStream::from_std(d.sock) {
            Ok(s) => s,
            Err(e) => {
                give_up(&backends, &e);
                for b in s.backends.iter().flatten() {
                    let _ = b.conn.stream.try_write(&QUIT);
                }
                return None;
            }
        };
        let mut conn = Conn::new(stream, s.ctx.cfg.max_packet);
        conn.seq = d.seq;
        s.backends[role as usize] = Some(Backend {
            conn,
            cluster,
            endpoint: d.endpoint,
            _active: d.active,
            counters: cluster.endpoints[d.endpoint].stats.workers.get(worker),
            status: d.status,
            unsure: d.unsure,
            gtid_seen: d.gtid_seen.map(String::from),
            found_dead,
        });
    }
    Some((kept, s, tls, since))
}

/// A parked session cannot go on: COM_QUIT to the servers it still has.
fn give_up(backends: &[Option<Dormant>; 2], why: &dyn std::fmt::Display) {
    tracing::debug!(error = %why, "could not resume a parked mysql session");
    backends.iter().flatten().for_each(|d| quit_now(&d.sock));
}

/// COM_QUIT, as [`Session::quit`] sends it.
const QUIT: [u8; 5] = [1, 0, 0, 0, command::QUIT];

/// Sends COM_QUIT on a backend socket out of the runtime: best effort, without waiting (five
/// bytes to an idle, non-blocking socket).
fn quit_now(sock: &std::net::TcpStream) {
    let _ = (&*sock).write(&QUIT);
}

/// Takes the session apart and parks it until its idle deadline.
fn park(
    worker: &Rc<Worker>,
    kept: Kept,
    s: Session<'_>,
    sock: std::net::TcpStream,
    tls: Option<Box<TlsClient>>,
    since: Instant,
) {
    let deadline = since + s.ctx.idle;
    let peer = s.ctx.peer;
    let Session {
        login,
        backends,
        st,
        ..
    } = s;
    let mut dormant: [Option<Dormant>; 2] = [None, None];
    let mut failed = None;
    for (slot, b) in dormant.iter_mut().zip(backends) {
        let Some(b) = b else { continue };
        if failed.is_some() {
            let _ = b.conn.stream.try_write(&QUIT);
            continue;
        }
        // Bytes the server sent unasked are what `stale` reports; they need not be kept.
        let found_dead = b
            .found_dead
            .or_else(|| (!b.conn.buf.is_empty()).then(|| UNASKED.to_owned()));
        match b.conn.stream.into_std() {
            Ok(bsock) => {
                *slot = Some(Dormant {
                    sock: bsock,
                    seq: b.conn.seq,
                    endpoint: b.endpoint,
                    active: b._active,
                    status: b.status,
                    unsure: b.unsure,
                    gtid_seen: b.gtid_seen.map(String::into_boxed_str),
                    found_dead: found_dead.map(String::into_boxed_str),
                });
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        tracing::debug!(%peer, error = %e, "could not park a mysql session's backend; closing the session");
        dormant.iter().flatten().for_each(|d| quit_now(&d.sock));
        return;
    }
    let table = &kept.held.table;
    let stats = table.listeners[kept.held.listener].stats.clone();
    let parked = Parked {
        _parked: Some(OwnedGauge::new(stats, worker.id, |s, w| {
            &s.workers.get(w).parked
        })),
        kept,
        login,
        st,
        backends: dormant,
        tls,
        since,
    };
    worker
        .park
        .park(worker, Sleeper::Client(sock, Box::new(parked)), deadline);
}

impl ResumeClient for Parked {
    fn resume(self: Box<Self>, worker: &Rc<Worker>, sock: std::net::TcpStream, _woken: bool) {
        match TcpStream::from_std(sock) {
            Ok(stream) => {
                tokio::task::spawn_local(run(worker.clone(), self, stream, Vec::new()));
            }
            Err(e) => give_up(&self.backends, &e),
        }
    }

    /// Idled out while parked: COM_QUIT to the backends, as a live session idling out sends,
    /// and the client closed (a TLS client told with a `close_notify`, as a live one is).
    fn expire(self: Box<Self>, mut sock: std::net::TcpStream) {
        self.backends
            .iter()
            .flatten()
            .for_each(|d| quit_now(&d.sock));
        if let Some(mut tls) = self.tls {
            let session = &mut tls.get_mut().1;
            session.send_close_notify();
            // A few dozen bytes into an idle socket's empty send buffer: it does not block.
            let _ = session.write_tls(&mut sock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_session_is_small() {
        // What corelane keeps of a parked session with both its server connections open,
        // sockets included: its slab entry and its box (the session's login and State own
        // heap memory only for what the client set: replayed commands, a database name,
        // prepared statements).
        let entry = crate::worker::park::entry_size();
        let boxed = std::mem::size_of::<Parked>();
        println!("parked mysql session: {entry}-byte slab entry + {boxed} bytes boxed");
        assert!(entry + boxed <= 512, "{entry} + {boxed} bytes");
    }
}
