//! The `mysql` health check: log in as a real client would (`mysql_native_password`), run
//! `SELECT 1`, and for an endpoint checked as a replica also require `@@read_only = 1` and a
//! replication lag (`Seconds_Behind_Master` of `SHOW SLAVE STATUS`) at most the configured
//! bound; a NULL lag (replication stopped) fails.
//!
//! One exchange at a time over a fresh connection, through the sans-IO codec of
//! `proto::mysql`. Not here: timeouts (the caller's), TLS to the server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proto::mysql::auth::native_password;
use crate::proto::mysql::packet;
use crate::proto::mysql::wire::{
    self, HandshakeV10, Reply, caps, column_name, command, put_lenenc, text_row,
};

/// Largest reply packet a check accepts.
const MAX_PACKET: usize = 1 << 20;
const NATIVE: &[u8] = b"mysql_native_password";

pub use crate::config::model::MysqlCheck;

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    seq: u8,
}

impl Conn {
    async fn read(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match packet::frame(&self.buf, MAX_PACKET) {
                Ok(Some(f)) => {
                    let p = packet::payload(&self.buf, &f).into_owned();
                    self.seq = f.last_seq.wrapping_add(1);
                    self.buf.drain(..f.consumed);
                    return Ok(p);
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed by the server".to_owned());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, payload: &[u8]) -> Result<(), String> {
        let mut out = Vec::with_capacity(payload.len() + packet::HEADER);
        self.seq = packet::write(&mut out, self.seq, payload);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The first value of the first row of a query (`None`: no row, or NULL).
    async fn scalar(&mut self, sql: &str) -> Result<Option<String>, String> {
        let (_, rows) = self.query(sql).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .flatten())
    }

    /// Runs a text query and returns its column names and rows.
    async fn query(
        &mut self,
        sql: &str,
    ) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), String> {
        self.seq = 0;
        let mut q = vec![command::QUERY];
        q.extend_from_slice(sql.as_bytes());
        self.write(&q).await?;
        let first = self.read().await?;
        let columns = match Reply::parse(&first).map_err(|e| e.to_string())? {
            Reply::Err(e) => return Err(err_text(sql, &e)),
            Reply::Ok(_) => return Ok((Vec::new(), Vec::new())),
            _ => wire::Reader::new(&first)
                .lenenc()
                .map_err(|e| e.to_string())?,
        };
        let mut names = Vec::new();
        for _ in 0..columns.min(4096) {
            let c = self.read().await?;
            names.push(
                String::from_utf8_lossy(column_name(&c).map_err(|e| e.to_string())?).into_owned(),
            );
        }
        self.read().await?; // EOF after the column definitions
        let mut rows = Vec::new();
        loop {
            let p = self.read().await?;
            match Reply::parse(&p).map_err(|e| e.to_string())? {
                Reply::Eof { .. } => return Ok((names, rows)),
                Reply::Err(e) => return Err(err_text(sql, &e)),
                _ => {
                    let row = text_row(&p).map_err(|e| e.to_string())?;
                    rows.push(
                        row.into_iter()
                            .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                            .collect(),
                    );
                }
            }
        }
    }
}

fn err_text(what: &str, e: &wire::ErrPacket<'_>) -> String {
    format!(
        "{what}: ERROR {} ({}): {}",
        e.code,
        String::from_utf8_lossy(e.sql_state.unwrap_or(b"HY000")),
        String::from_utf8_lossy(e.message)
    )
}

/// Runs the check against `stream`, freshly connected.
pub async fn check(stream: TcpStream, c: &MysqlCheck) -> Result<(), String> {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        seq: 0,
    };
    login(&mut conn, c).await?;
    if conn.scalar("SELECT 1").await?.as_deref() != Some("1") {
        return Err("SELECT 1 did not return 1".to_owned());
    }
    if let Some(max) = c.max_replication_lag {
        if conn.scalar("SELECT @@read_only").await?.as_deref() != Some("1") {
            return Err("replica is not read_only".to_owned());
        }
        let (names, rows) = conn.query("SHOW SLAVE STATUS").await?;
        let Some(row) = rows.first() else {
            return Err("not a replica (SHOW SLAVE STATUS is empty)".to_owned());
        };
        let i = names
            .iter()
            .position(|n| n == "Seconds_Behind_Master")
            .ok_or("SHOW SLAVE STATUS has no Seconds_Behind_Master")?;
        match row.get(i).cloned().flatten() {
            None => return Err("replication is stopped (lag is NULL)".to_owned()),
            Some(s) => {
                let lag: u64 = s
                    .parse()
                    .map_err(|_| format!("lag {s:?} is not a number"))?;
                if lag > max.as_secs() {
                    return Err(format!("replication lag {lag}s is over {}s", max.as_secs()));
                }
            }
        }
    }
    conn.seq = 0;
    let _ = conn.write(&[command::QUIT]).await;
    Ok(())
}

async fn login(conn: &mut Conn, c: &MysqlCheck) -> Result<(), String> {
    let greeting = conn.read().await?;
    if greeting.first() == Some(&0xFF) {
        if let Ok(Reply::Err(e)) = Reply::parse(&greeting) {
            return Err(err_text("connect", &e));
        }
    }
    let h = HandshakeV10::parse(&greeting).map_err(|e| format!("greeting: {e}"))?;
    let want = caps::LONG_PASSWORD
        | caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::TRANSACTIONS
        | caps::MULTI_RESULTS
        | caps::PLUGIN_AUTH
        | caps::PLUGIN_AUTH_LENENC_DATA;
    if h.capabilities & caps::PROTOCOL_41 == 0 {
        return Err("server does not speak protocol 4.1".to_owned());
    }
    let auth = native_password(&h.scramble, c.password.as_bytes());
    let mut p = Vec::new();
    p.extend_from_slice(&(want & h.capabilities).to_le_bytes());
    p.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
    p.push(h.charset);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(c.user.as_bytes());
    p.push(0);
    put_lenenc(&mut p, auth.len() as u64);
    p.extend_from_slice(&auth);
    p.extend_from_slice(NATIVE);
    p.push(0);
    conn.write(&p).await?;
    loop {
        let reply = conn.read().await?;
        match reply.first() {
            Some(0x00) => return Ok(()),
            Some(0xFF) => {
                return match Reply::parse(&reply) {
                    Ok(Reply::Err(e)) => Err(err_text("login", &e)),
                    _ => Err("login refused".to_owned()),
                };
            }
            // Auth switch request: plugin name, then its scramble.
            Some(0xFE) => {
                let mut r = wire::Reader::new(&reply[1..]);
                let plugin = r.nul_bytes().map_err(|e| e.to_string())?;
                if plugin != NATIVE {
                    return Err(format!(
                        "server asks for auth plugin {}, only mysql_native_password is supported",
                        String::from_utf8_lossy(plugin)
                    ));
                }
                let rest = r.rest();
                let scramble = rest.strip_suffix(&[0]).unwrap_or(rest);
                conn.write(&native_password(scramble, c.password.as_bytes()))
                    .await?;
            }
            _ => return Err("unexpected reply to the login".to_owned()),
        }
    }
}
