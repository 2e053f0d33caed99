//! The client side of a session: packet I/O on the client's connection (plain or TLS) and the
//! login corelane terminates: the greeting, the optional switch to TLS, the password check
//! against the listener's users (`mysql_native_password`, or `caching_sha2_password` by its
//! fast path), an auth switch for clients that answered with another method, and
//! COM_CHANGE_USER.
//!
//! Not here: anything after the login (`super::session`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{caching_sha2_password, native_password, same};
use super::packet::{self, Frame, FrameError};
use super::wire::{self, HandshakeResponse41, HandshakeV10, caps, status};
use crate::config::model::{MysqlListener, MysqlUser};
use crate::config::mysql::AuthPlugin;
use crate::io::buffers::VecPool;

/// Capabilities corelane offers clients. Not offered, because the engine forwards replies
/// unchanged and these would change their shape or need support it lacks: COMPRESS,
/// LOCAL_FILES, SESSION_TRACK, DEPRECATE_EOF, QUERY_ATTRIBUTES and MariaDB's extended
/// capabilities.
pub const OFFERED: u32 = caps::LONG_PASSWORD
    | caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::NO_SCHEMA
    | caps::ODBC
    | caps::IGNORE_SPACE
    | caps::PROTOCOL_41
    | caps::INTERACTIVE
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_DATA;

const NATIVE: &[u8] = b"mysql_native_password";
const SHA2: &[u8] = b"caching_sha2_password";
/// utf8mb4_general_ci, announced in the greeting.
const CHARSET: u8 = 45;

/// Connection ids shown to clients (process-wide; they are not the backends' thread ids).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Why a client connection ends.
#[derive(Debug)]
pub enum End {
    /// The client closed, or its connection failed.
    Gone,
    /// A protocol violation; the ERR payload to send, if any, before closing.
    Refused(Vec<u8>),
}

/// Packet I/O on a client connection. Its buffers come from the worker's pool while bytes are
/// in flight and go back when a command has been answered.
#[derive(Debug)]
pub struct Client<'p, S> {
    pub stream: S,
    pub rbuf: Vec<u8>,
    pub wbuf: Vec<u8>,
    pub max_packet: usize,
    pool: &'p VecPool,
    /// Bytes written since the owner last took the count.
    pub sent: u64,
}

impl<'p, S: AsyncRead + AsyncWrite + Unpin> Client<'p, S> {
    pub fn new(stream: S, max_packet: usize, pool: &'p VecPool) -> Self {
        Client {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            max_packet,
            pool,
            sent: 0,
        }
    }

    /// Waits for a whole packet at the front of `rbuf`.
    pub async fn next(&mut self) -> Result<Frame, End> {
        loop {
            if self.rbuf.capacity() == 0 {
                self.rbuf = self.read_idle().await?;
            }
            match packet::frame(&self.rbuf, self.max_packet) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(FrameError::TooLarge { .. }) => {
                    return Err(End::Refused(err_payload(
                        1153,
                        b"08S01",
                        "Got a packet bigger than 'max_allowed_packet' bytes",
                    )));
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < 512 {
                self.rbuf.reserve(4096);
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return Err(End::Gone),
                Ok(_) => {}
            }
        }
    }

    /// Waits for bytes without holding a buffer (an idle session holds none), and returns them
    /// in a buffer from the pool. Each poll takes a buffer, reads into it with the task's own
    /// context, and gives it back if the read would wait: the stream (a socket, or TLS over
    /// one, which may already hold decrypted bytes) and the runtime's budget wake the task as
    /// any read's would.
    async fn read_idle(&mut self) -> Result<Vec<u8>, End> {
        let (stream, pool) = (&mut self.stream, self.pool);
        std::future::poll_fn(|cx| {
            let mut buf = pool.take();
            let read = std::pin::pin!(stream.read_buf(&mut buf)).poll(cx);
            match read {
                Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(Ok(buf)),
                Poll::Ready(_) => {
                    pool.put(&mut buf);
                    Poll::Ready(Err(End::Gone))
                }
                Poll::Pending => {
                    pool.put(&mut buf);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Drops the first `n` bytes of `rbuf` (a packet that was handled); an empty buffer goes
    /// back to the pool.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.drain(..n);
        if self.rbuf.is_empty() {
            self.pool.put(&mut self.rbuf);
        }
    }

    /// Takes back the read buffer lent out with a command whose packets took its first
    /// `consumed` bytes (anything read meanwhile goes after what followed the command).
    pub fn restore(&mut self, mut req: Vec<u8>, consumed: usize) {
        req.drain(..consumed);
        if !self.rbuf.is_empty() {
            req.extend_from_slice(&self.rbuf);
        }
        self.pool.put(&mut self.rbuf);
        self.rbuf = req;
        if self.rbuf.is_empty() {
            self.pool.put(&mut self.rbuf);
        }
    }

    /// The write buffer, taken from the pool if needed.
    pub fn out(&mut self) -> &mut Vec<u8> {
        if self.wbuf.capacity() == 0 {
            self.wbuf = self.pool.take();
        }
        &mut self.wbuf
    }

    /// Queues one packet.
    pub fn push(&mut self, seq: u8, payload: &[u8]) -> u8 {
        packet::write(self.out(), seq, payload)
    }

    /// Writes what is queued, through to the socket; the emptied buffer goes back to the
    /// pool. (Over TLS a write can return once rustls has taken the bytes, with records still
    /// waiting for the socket: the flush sends them, where nothing else would while the
    /// session waits for the client.)
    pub async fn flush(&mut self) -> Result<(), End> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let r = match self.stream.write_all(&self.wbuf).await {
            Ok(()) => self.stream.flush().await,
            Err(e) => Err(e),
        };
        self.sent += self.wbuf.len() as u64;
        self.pool.put(&mut self.wbuf);
        r.map_err(|_| End::Gone)
    }

    /// Sends one packet now.
    pub async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<u8, End> {
        let next = self.push(seq, payload);
        self.flush().await?;
        Ok(next)
    }

    /// The next packet's payload, owned, and its sequence id (login phase only).
    async fn read_owned(&mut self) -> Result<(Vec<u8>, u8), End> {
        let f = self.next().await?;
        let p = packet::payload(&self.rbuf, &f).into_owned();
        self.consume(f.consumed);
        Ok((p, f.last_seq))
    }
}

/// An ERR payload.
pub fn err_payload(code: u16, state: &[u8; 5], message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(message.len() + 9);
    wire::put_err(&mut p, code, state, message);
    p
}

/// An OK payload with `status`.
pub fn ok_payload(status: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(7);
    wire::put_ok(
        &mut p,
        &wire::OkPacket {
            affected_rows: 0,
            last_insert_id: 0,
            status,
            warnings: 0,
            info: b"",
        },
    );
    p
}

/// A 20-byte scramble of printable characters, as servers send.
fn scramble() -> [u8; 20] {
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = fastrand::u8(33..127);
    }
    s
}

/// The greeting; returns its scramble.
pub fn greeting(cfg: &MysqlListener, tls: bool, out: &mut Vec<u8>) -> [u8; 20] {
    let s = scramble();
    let h = HandshakeV10 {
        server_version: cfg.server_version.as_bytes(),
        connection_id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        scramble: s.to_vec(),
        capabilities: OFFERED | if tls { caps::SSL } else { 0 },
        charset: CHARSET,
        status: status::AUTOCOMMIT,
        mariadb_capabilities: 0,
        auth_plugin: Some(cfg.auth_plugin.name()),
    };
    let mut p = Vec::with_capacity(96);
    h.encode(&mut p);
    packet::write(out, 0, &p);
    s
}

/// Who logged in, and how. Owns what it says (no borrow of the table), so that a parked
/// session can keep it.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// Index into the listener's `users`.
    pub user: usize,
    /// Capabilities both sides have: what backends are asked for too.
    pub capabilities: u32,
    pub charset: u8,
    pub database: Option<Vec<u8>>,
    /// The scramble of the connection's greeting (COM_CHANGE_USER is checked against it).
    pub scramble: [u8; 20],
}

/// What the client's login packet said, before the password is checked.
pub struct Response {
    pub payload: Vec<u8>,
    pub seq: u8,
}

/// Reads the client's login packet, and not a byte more: after an SSL request the next bytes
/// are the client's TLS hello, which belong to the TLS handshake.
pub async fn read_response<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
) -> Result<Response, End> {
    let mut head = [0u8; 4];
    client
        .stream
        .read_exact(&mut head)
        .await
        .map_err(|_| End::Gone)?;
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    // A login is small; a larger "login" is not one.
    if len >= packet::MAX_CHUNK || len > 64 * 1024 {
        return Err(End::Refused(err_payload(1043, b"08S01", "Bad handshake")));
    }
    let mut payload = vec![0u8; len];
    client
        .stream
        .read_exact(&mut payload)
        .await
        .map_err(|_| End::Gone)?;
    Ok(Response {
        payload,
        seq: head[3],
    })
}

/// Whether a login packet is an SSL request (the client switches to TLS next).
pub fn is_ssl_request(r: &Response) -> bool {
    HandshakeResponse41::parse(&r.payload).is_ok_and(|h| h.ssl_request)
}

/// Checks the login against the listener's users and answers it (OK, or ERR and `End`).
pub async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
    cfg: &MysqlListener,
    scramble: &[u8; 20],
    r: Response,
    peer: SocketAddr,
) -> Result<LoggedIn, End> {
    let h = HandshakeResponse41::parse(&r.payload)
        .map_err(|_| End::Refused(err_payload(1043, b"08S01", "Bad handshake")))?;
    if h.ssl_request {
        return Err(End::Refused(err_payload(
            1043,
            b"08S01",
            "Bad handshake: TLS is not configured on this listener",
        )));
    }
    let plugin = h.auth_plugin.unwrap_or(NATIVE);
    let seq = r.seq.wrapping_add(1);
    let u = authenticate(
        client,
        cfg,
        h.user,
        plugin,
        h.auth_response,
        scramble,
        seq,
        peer,
    )
    .await?;
    let capabilities = h.capabilities & OFFERED;
    Ok(LoggedIn {
        user: u,
        capabilities,
        charset: h.charset,
        database: h
            .database
            .filter(|d| !d.is_empty() && capabilities & caps::CONNECT_WITH_DB != 0)
            .map(<[u8]>::to_vec),
        scramble: *scramble,
    })
}

/// Sends an auth switch request and returns the client's answer and the next sequence id.
async fn switch<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
    seq: u8,
    scramble: &[u8; 20],
    plugin: AuthPlugin,
) -> Result<(Vec<u8>, u8), End> {
    let mut p = Vec::with_capacity(48);
    p.push(0xFE);
    p.extend_from_slice(plugin.name());
    p.push(0);
    p.extend_from_slice(scramble);
    p.push(0);
    client.send(seq, &p).await?;
    let (response, last) = client.read_owned().await?;
    Ok((response, last.wrapping_add(1)))
}

/// COM_CHANGE_USER: checks the new user's credentials and returns the new login; the caller
/// resets the session. As a server does, the response is checked against the scramble of the
/// connection's login (clients compute it with that one), and a client answering with another
/// method is switched to `mysql_native_password`. A failed change is answered with ERR and
/// ends the connection.
pub async fn change_user<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
    cfg: &MysqlListener,
    payload: &[u8],
    login: &LoggedIn,
    seq: u8,
    peer: SocketAddr,
) -> Result<LoggedIn, End> {
    let bad = || End::Refused(err_payload(1047, b"08S01", "Malformed COM_CHANGE_USER"));
    let capabilities = login.capabilities;
    let mut r = wire::Reader::new(payload.get(1..).ok_or_else(bad)?);
    let name = r.nul_bytes().map_err(|_| bad())?;
    let auth = if capabilities & caps::SECURE_CONNECTION != 0 {
        let n = usize::from(r.u8().map_err(|_| bad())?);
        r.bytes(n).map_err(|_| bad())?
    } else {
        r.nul_bytes().map_err(|_| bad())?
    };
    let database = r.nul_bytes().unwrap_or_default();
    let charset = r.u16().map(|c| c as u8).unwrap_or(login.charset);
    let plugin = if capabilities & caps::PLUGIN_AUTH != 0 {
        r.nul_bytes().unwrap_or(NATIVE)
    } else {
        NATIVE
    };
    let scramble = &login.scramble;
    let u = authenticate(client, cfg, name, plugin, auth, scramble, seq, peer).await?;
    Ok(LoggedIn {
        user: u,
        capabilities,
        charset,
        database: (!database.is_empty()).then(|| database.to_vec()),
        scramble: *scramble,
    })
}

/// Checks the credentials of the user `name` (`response`, computed by `plugin` against
/// `scramble`), switching a client that used another method to `mysql_native_password`, and
/// answers from sequence id `seq`: OK (and the user's index in `cfg.users`), or ERR and
/// [`End::Gone`].
#[allow(clippy::too_many_arguments)]
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<'_, S>,
    cfg: &MysqlListener,
    name: &[u8],
    plugin: &[u8],
    response: &[u8],
    scramble: &[u8; 20],
    mut seq: u8,
    peer: SocketAddr,
) -> Result<usize, End> {
    let index = cfg.user_index(name);
    let user = index.and_then(|i| cfg.users.get(i));
    let mut sent_password = !response.is_empty();
    let mut used_sha2 = plugin == SHA2;
    let verified = match check(user, plugin, scramble, response) {
        Some(v) => v,
        None => {
            // Another method (ed25519, dialog, ...): ask for ours instead.
            let (response, s) =
                switch(client, seq, scramble, AuthPlugin::MysqlNativePassword).await?;
            seq = s;
            sent_password = !response.is_empty();
            used_sha2 = false;
            check(user, NATIVE, scramble, &response) == Some(true)
        }
    };
    let Some(u) = index.filter(|_| verified) else {
        let msg = format!(
            "Access denied for user '{}'@'{}' (using password: {})",
            String::from_utf8_lossy(name),
            peer.ip(),
            if sent_password { "YES" } else { "NO" }
        );
        client.push(seq, &err_payload(1045, b"28000", &msg));
        let _ = client.flush().await;
        return Err(End::Gone);
    };
    if used_sha2 {
        // fast_auth_success, then the OK.
        seq = client.push(seq, &[0x01, 0x03]);
    }
    client.push(seq, &ok_payload(status::AUTOCOMMIT));
    client.flush().await?;
    Ok(u)
}

/// Checks `response` for `user` by `plugin`: `None` for a method corelane does not check.
fn check(
    user: Option<&MysqlUser>,
    plugin: &[u8],
    scramble: &[u8; 20],
    response: &[u8],
) -> Option<bool> {
    let expected = match plugin {
        NATIVE => native_password,
        SHA2 => caching_sha2_password,
        _ => return None,
    };
    Some(user.is_some_and(|u| same(&expected(scramble, u.password.as_bytes()), response)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Protocol;
    use crate::config::tls::{CertSpec, ClientAuth, TlsListener, UpstreamTls};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    /// A TLS client connected to a TLS server stream over loopback (the example certificates).
    async fn tls_pair() -> (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) {
        let certs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/certs");
        let listener = TlsListener {
            certificates: vec![CertSpec {
                cert: certs.join("localhost.crt"),
                key: certs.join("localhost.key"),
                names: vec!["localhost".to_owned()],
            }],
            client_ca: None,
            client_auth: ClientAuth::Required,
            session_cache: 16,
            handshake_timeout: Duration::from_secs(1),
        };
        let server = crate::tls::server_config("l", &listener, Protocol::Mysql).unwrap();
        let upstream = UpstreamTls {
            ca: certs.join("ca.crt"),
            server_name: Some("localhost".to_owned()),
            verify: true,
        };
        let client = crate::tls::client::cluster("c", &upstream, false).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let connect = async {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = client.server_name.clone().unwrap();
            tokio_rustls::TlsConnector::from(client.config.clone())
                .connect(name, s)
                .await
                .unwrap()
        };
        let accept = async {
            let (s, _) = l.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(s)
                .await
                .unwrap()
        };
        tokio::join!(connect, accept)
    }

    const PING: [u8; 5] = [1, 0, 0, 0, 0x0e];

    /// `peer` sends COM_PING; `c` reads it and consumes it, as a session does.
    async fn ping(
        peer: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        c: &mut Client<'_, tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    ) {
        peer.write_all(&PING).await.unwrap();
        peer.flush().await.unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&c.rbuf[..f.consumed], &PING);
        c.consume(f.consumed);
        assert_eq!(c.rbuf.capacity(), 0);
    }

    #[tokio::test]
    async fn an_idle_tls_client_holds_no_buffer() {
        let (mut peer, server) = tls_pair().await;
        let pool = VecPool::new(16 * 1024, 4);
        let mut c = Client::new(server, 1024, &pool);
        ping(&mut peer, &mut c).await;
        // Waiting for the next command (the socket's readiness from the last read is still
        // set): the buffer goes back to the pool rather than being held through the wait.
        let waited = tokio::time::timeout(Duration::from_millis(100), c.next()).await;
        assert!(waited.is_err(), "no command was sent");
        assert_eq!(c.rbuf.capacity(), 0, "an idle TLS client holds a buffer");
        // And the next command is read.
        ping(&mut peer, &mut c).await;
    }

    #[test]
    fn an_idle_tls_read_with_the_task_budget_spent_yields_rather_than_spins() {
        // The runtime's per-task budget refuses I/O once spent, and only a read that yields
        // gets it back: a read for the next command must then yield, not retry in place (a
        // retry would spin inside one poll, and stop the worker).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (mut peer, server) = tls_pair().await;
                let pool = VecPool::new(16 * 1024, 4);
                let mut c = Client::new(server, 1024, &pool);
                peer.write_all(&PING).await.unwrap();
                peer.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Spend the budget without yielding: budgeted writes to an in-memory pipe.
                let (mut spend, _other) = tokio::io::duplex(1 << 20);
                while tokio::task::coop::has_budget_remaining() {
                    spend.write_all(b"x").await.unwrap();
                }
                let f = c.next().await.unwrap();
                let _ = tx.send(c.rbuf[..f.consumed].to_vec());
            });
        });
        let got = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(got.as_deref(), Ok(&PING[..]), "the read spun or failed");
    }
}
