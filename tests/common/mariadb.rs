//! A real MariaDB primary and replica (scripts/mariadb-pair.sh), stopped on drop, and a
//! PyMySQL runner for client-side steps.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::{free_ports, tempdir};

/// A primary (server_id 1) and a replica (server_id 2) with GTID replication.
pub struct Pair {
    pub dir: PathBuf,
    pub primary: SocketAddr,
    pub replica: SocketAddr,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/mariadb-pair.sh")
}

impl Pair {
    pub fn start() -> Pair {
        let dir = tempdir("mariadb");
        let ports = free_ports(2);
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .args([ports[0].to_string(), ports[1].to_string()])
            .output()
            .expect("scripts/mariadb-pair.sh (mariadb-server, mariadb-client) must be installed");
        if !out.status.success() {
            // A server that did start must not outlive the test.
            let _ = Command::new(script()).arg("stop").arg(&dir).output();
        }
        assert!(
            out.status.success(),
            "scripts/mariadb-pair.sh start failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Pair {
            dir,
            primary: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            replica: SocketAddr::from(([127, 0, 0, 1], ports[1])),
        }
    }

    /// Runs SQL as root on one server ("primary" or "replica", through its socket); returns
    /// the rows, tab-separated, without column names.
    pub fn sql(&self, server: &str, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(["--protocol=socket", "-uroot", "-N", "-B", "-S"])
            .arg(self.dir.join(format!("{server}.sock")))
            .args(["-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A global status counter of one server.
    pub fn counter(&self, server: &str, name: &str) -> u64 {
        let row = self.sql(server, &format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        row.split('\t')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no counter {name}: {row:?}"))
    }

    /// Waits until the replica has applied everything the primary has.
    pub fn sync(&self) {
        let pos = self.sql("primary", "SELECT @@gtid_binlog_pos");
        let r = self.sql("replica", &format!("SELECT MASTER_GTID_WAIT('{pos}', 10)"));
        assert_eq!(r, "0", "replica did not catch up with {pos}");
    }

    /// Kills one server (SIGKILL), as a crash would.
    pub fn kill(&self, server: &str) {
        let pid = std::fs::read_to_string(self.dir.join(format!("{server}.pid"))).unwrap();
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        let _ = std::fs::remove_file(self.dir.join(format!("{server}.pid")));
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs Python with PyMySQL (python3-pymysql): `code` follows a preamble defining
/// `connect(**kw)` (user app/app, database shop, autocommit on, to `addr` unless `port=` is
/// given) and `one(c, sql, args=None)` (the first row). Returns stdout, trimmed; panics with
/// stderr if the script fails.
pub fn py(addr: SocketAddr, code: &str) -> String {
    let preamble = format!(
        r#"
import pymysql, sys, time
from pymysql.constants import CLIENT
def connect(**kw):
    args = dict(host="127.0.0.1", port={port}, user="app", password="app", database="shop", autocommit=True)
    args.update(kw)
    return pymysql.connect(**args)
def one(c, sql, args=None):
    cur = c.cursor()
    cur.execute(sql, args)
    return cur.fetchone()
def err(f):
    try:
        f()
    except pymysql.MySQLError as e:
        return e.args[0]
    return None
"#,
        port = addr.port()
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &format!("{preamble}\n{code}")])
        .output()
        .expect("python3 with python3-pymysql must be installed");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
