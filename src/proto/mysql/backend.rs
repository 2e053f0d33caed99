//! The client side of a connection to a MySQL/MariaDB server: packet reads and writes over a
//! `TcpStream`, the login (`mysql_native_password`, with the server's auth switch), and
//! simple text queries whose results are decoded (for health checks and the engine's own
//! queries, such as a GTID wait).
//!
//! The engine forwards replies without decoding them: it reads into [`Conn::buf`] with
//! [`Conn::fill`] and frames packets itself. Not here: timeouts (the callers'), TLS to the
//! server, other authentication methods towards servers.

use std::fmt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::native_password;
use super::packet;
use super::wire::{self, HandshakeV10, Reply, caps, column_name, command, put_lenenc, text_row};

const NATIVE: &[u8] = b"mysql_native_password";

/// Why an exchange with a server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with an ERR packet.
    Server {
        code: u16,
        state: [u8; 5],
        message: String,
    },
    /// The connection failed, or the server broke the protocol.
    Io(String),
}

impl Failure {
    fn from_err(e: &wire::ErrPacket<'_>) -> Self {
        let mut state = *b"HY000";
        if let Some(s) = e.sql_state {
            if s.len() == 5 {
                state.copy_from_slice(s);
            }
        }
        Failure::Server {
            code: e.code,
            state,
            message: String::from_utf8_lossy(e.message).into_owned(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Server {
                code,
                state,
                message,
            } => write!(
                f,
                "ERROR {code} ({}): {message}",
                String::from_utf8_lossy(state)
            ),
            Failure::Io(e) => f.write_str(e),
        }
    }
}

impl From<Failure> for String {
    fn from(f: Failure) -> String {
        f.to_string()
    }
}

/// What a login sends.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: Option<&'a [u8]>,
    /// Capabilities asked for (the server's are and-ed in); the protocol-4.1 and
    /// authentication ones are always added.
    pub capabilities: u32,
    /// `None`: the server's default.
    pub charset: Option<u8>,
    pub max_packet: u32,
}

/// A connection to a server.
#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read and not yet consumed.
    pub buf: Vec<u8>,
    /// The sequence id of the next packet written.
    pub seq: u8,
    /// Largest packet accepted.
    pub max_packet: usize,
}

impl Conn {
    pub fn new(stream: TcpStream, max_packet: usize) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            seq: 0,
            max_packet,
        }
    }

    /// Reads more bytes into `buf`; a closed connection is an error.
    pub async fn fill(&mut self) -> Result<(), Failure> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(self.buf.len().clamp(4096, 1 << 20));
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err(Failure::Io("connection closed by the server".to_owned())),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::Io(format!("read: {e}"))),
        }
    }

    /// The next packet's payload.
    pub async fn read(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            match packet::frame(&self.buf, self.max_packet) {
                Ok(Some(f)) => {
                    let p = packet::payload(&self.buf, &f).into_owned();
                    self.seq = f.last_seq.wrapping_add(1);
                    self.buf.drain(..f.consumed);
                    return Ok(p);
                }
                Ok(None) => self.fill().await?,
                Err(e) => return Err(Failure::Io(e.to_string())),
            }
        }
    }

    /// Sends `payload` as the next packet(s) of the exchange.
    pub async fn write(&mut self, payload: &[u8]) -> Result<(), Failure> {
        let mut out = Vec::with_capacity(payload.len() + packet::HEADER);
        self.seq = packet::write(&mut out, self.seq, payload);
        self.write_raw(&out).await
    }

    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| Failure::Io(format!("write: {e}")))
    }

    /// Sends a command (a new exchange: sequence ids restart at 0).
    pub async fn command(&mut self, payload: &[u8]) -> Result<(), Failure> {
        self.seq = 0;
        self.write(payload).await
    }

    /// Sends a command and reads its whole reply (query, init_db, set_option), returning the
    /// final status; an ERR is a [`Failure::Server`].
    pub async fn run(&mut self, payload: &[u8]) -> Result<u16, Failure> {
        use super::reply::{Expect, ReplyReader, Step};
        self.command(payload).await?;
        let expect = if payload.first() == Some(&command::QUERY) {
            Expect::Results
        } else {
            Expect::One
        };
        let mut r = ReplyReader::new(expect);
        loop {
            let p = self.read().await?;
            match r.feed(&p, p.len()) {
                Ok(Step::More) => {}
                Ok(Step::Done { error: true, .. }) => {
                    return Err(match Reply::parse(&p) {
                        Ok(Reply::Err(e)) => Failure::from_err(&e),
                        _ => Failure::Io("malformed ERR packet".to_owned()),
                    });
                }
                Ok(Step::Done { status, .. }) => return Ok(status.unwrap_or(0)),
                Err(e) => return Err(Failure::Io(e.to_string())),
            }
        }
    }

    /// The first value of the first row of a query (`None`: no row, or NULL).
    pub async fn scalar(&mut self, sql: &str) -> Result<Option<String>, Failure> {
        let (_, rows) = self.query(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .flatten())
    }

    /// Runs a text query and returns its column names and rows.
    pub async fn query(
        &mut self,
        sql: &str,
    ) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), Failure> {
        let mut q = vec![command::QUERY];
        q.extend_from_slice(sql.as_bytes());
        self.command(&q).await?;
        let malformed = |e: wire::WireError| Failure::Io(e.to_string());
        let first = self.read().await?;
        let columns = match Reply::parse(&first).map_err(malformed)? {
            Reply::Err(e) => return Err(Failure::from_err(&e)),
            Reply::Ok(_) => return Ok((Vec::new(), Vec::new())),
            _ => wire::Reader::new(&first).lenenc().map_err(malformed)?,
        };
        let mut names = Vec::new();
        for _ in 0..columns.min(4096) {
            let c = self.read().await?;
            names.push(String::from_utf8_lossy(column_name(&c).map_err(malformed)?).into_owned());
        }
        self.read().await?; // EOF after the column definitions
        let mut rows = Vec::new();
        loop {
            let p = self.read().await?;
            match Reply::parse(&p).map_err(malformed)? {
                Reply::Eof { .. } => return Ok((names, rows)),
                Reply::Err(e) => return Err(Failure::from_err(&e)),
                _ => {
                    let row = text_row(&p).map_err(malformed)?;
                    rows.push(
                        row.into_iter()
                            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect(),
                    );
                }
            }
        }
    }

    /// Logs in on a fresh connection; returns the server status of the final OK.
    pub async fn login(&mut self, l: &Login<'_>) -> Result<u16, Failure> {
        let greeting = self.read().await?;
        if greeting.first() == Some(&0xFF) {
            if let Ok(Reply::Err(e)) = Reply::parse(&greeting) {
                return Err(Failure::from_err(&e));
            }
        }
        let h =
            HandshakeV10::parse(&greeting).map_err(|e| Failure::Io(format!("greeting: {e}")))?;
        if h.capabilities & caps::PROTOCOL_41 == 0 {
            return Err(Failure::Io("server does not speak protocol 4.1".to_owned()));
        }
        let mut want = l.capabilities
            | caps::LONG_PASSWORD
            | caps::PROTOCOL_41
            | caps::SECURE_CONNECTION
            | caps::TRANSACTIONS
            | caps::MULTI_RESULTS
            | caps::PLUGIN_AUTH
            | caps::PLUGIN_AUTH_LENENC_DATA;
        want &= !(caps::SSL | caps::CONNECT_ATTRS | caps::CONNECT_WITH_DB);
        if l.database.is_some() {
            want |= caps::CONNECT_WITH_DB;
        }
        let want = want & h.capabilities;
        let auth = native_password(&h.scramble, l.password.as_bytes());
        let mut p = Vec::with_capacity(128);
        p.extend_from_slice(&want.to_le_bytes());
        p.extend_from_slice(&l.max_packet.to_le_bytes());
        p.push(l.charset.unwrap_or(h.charset));
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(l.user.as_bytes());
        p.push(0);
        put_lenenc(&mut p, auth.len() as u64);
        p.extend_from_slice(&auth);
        if let Some(db) = l.database.filter(|_| want & caps::CONNECT_WITH_DB != 0) {
            p.extend_from_slice(db);
            p.push(0);
        }
        p.extend_from_slice(NATIVE);
        p.push(0);
        self.write(&p).await?;
        loop {
            let reply = self.read().await?;
            match reply.first() {
                Some(0x00) => {
                    return match Reply::parse(&reply) {
                        Ok(Reply::Ok(ok)) => Ok(ok.status),
                        _ => Err(Failure::Io("malformed OK after the login".to_owned())),
                    };
                }
                Some(0xFF) => {
                    return match Reply::parse(&reply) {
                        Ok(Reply::Err(e)) => Err(Failure::from_err(&e)),
                        _ => Err(Failure::Io("login refused".to_owned())),
                    };
                }
                // Auth switch request: plugin name, then its scramble.
                Some(0xFE) => {
                    let mut r = wire::Reader::new(&reply[1..]);
                    let plugin = r.nul_bytes().map_err(|e| Failure::Io(e.to_string()))?;
                    if plugin != NATIVE {
                        return Err(Failure::Io(format!(
                            "server asks for auth plugin {}, only mysql_native_password is supported",
                            String::from_utf8_lossy(plugin)
                        )));
                    }
                    let rest = r.rest();
                    let scramble = rest.strip_suffix(&[0]).unwrap_or(rest);
                    self.write(&native_password(scramble, l.password.as_bytes()))
                        .await?;
                }
                _ => return Err(Failure::Io("unexpected reply to the login".to_owned())),
            }
        }
    }
}
