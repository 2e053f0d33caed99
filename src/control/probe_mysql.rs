//! The `mysql` health check: log in as a real client would (`mysql_native_password`), run
//! `SELECT 1`, and for an endpoint checked as a replica also require `@@read_only = 1` and a
//! replication lag (`Seconds_Behind_Master` of `SHOW SLAVE STATUS`) at most the configured
//! bound; a NULL lag (replication stopped) fails.
//!
//! One exchange at a time over a fresh connection, through the sans-IO codec of
//! `proto::mysql`. Not here: timeouts (the caller's), TLS to the server.

use tokio::net::TcpStream;

use crate::proto::mysql::backend::{Conn, Login};
use crate::proto::mysql::wire::command;

/// Largest reply packet a check accepts.
const MAX_PACKET: usize = 1 << 20;

pub use crate::config::model::MysqlCheck;

/// Runs the check against `stream`, freshly connected.
pub async fn check(stream: TcpStream, c: &MysqlCheck) -> Result<(), String> {
    let mut conn = Conn::new(stream, MAX_PACKET);
    conn.login(&Login {
        user: &c.user,
        password: &c.password,
        database: None,
        capabilities: 0,
        charset: None,
        max_packet: MAX_PACKET as u32,
    })
    .await
    .map_err(|e| format!("login: {e}"))?;
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
