//! Real `redis-server` processes for tests, and a tiny blocking RESP client to talk to them
//! (or to anything that speaks RESP, such as nutcracker). Each server runs on a free loopback
//! port with persistence off and a private working directory, and is killed on drop.
//!
//! Not a general Redis client: no RESP3, no reconnects, no cluster redirections.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, tempdir};

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    pub addr: SocketAddr,
    pub password: Option<String>,
    pub dir: PathBuf,
    databases: u32,
    child: Child,
}

impl RedisServer {
    /// Starts a server with 16 databases and no password.
    pub fn start() -> RedisServer {
        Self::start_with(None, 16)
    }

    /// Starts a server with `databases` databases and, if given, `--requirepass`.
    /// Retries on another port if the chosen one was taken meanwhile.
    pub fn start_with(password: Option<&str>, databases: u32) -> RedisServer {
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempdir("redis");
            let log = dir.join("redis.log");
            let mut server = RedisServer {
                port,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                password: password.map(str::to_owned),
                child: spawn(port, &dir, password, databases),
                dir,
                databases,
            };
            if server.wait_ready() {
                return server;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("redis-server did not start:\n{last_log}");
    }

    /// Kills the server: its port refuses connections until [`Self::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, empty (nothing is persisted).
    pub fn restart(&mut self) {
        self.child = spawn(
            self.port,
            &self.dir,
            self.password.as_deref(),
            self.databases,
        );
        assert!(
            self.wait_ready(),
            "redis-server did not restart on {}",
            self.port
        );
    }

    /// Waits up to 10 s for PING to answer PONG; false if the process died.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut c) = self.connect() {
                if let Ok(Reply::Simple(s)) = c.call(&[b"PING"]) {
                    if s == "PONG" {
                        return true;
                    }
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A connection, authenticated when the server has a password.
    pub fn connect(&self) -> io::Result<Resp> {
        let mut c = Resp::connect(self.addr)?;
        if let Some(pw) = &self.password {
            match c.call(&[b"AUTH", pw.as_bytes()])? {
                Reply::Simple(_) => {}
                other => return Err(io::Error::other(format!("AUTH: {other:?}"))),
            }
        }
        Ok(c)
    }
}

fn spawn(port: u16, dir: &std::path::Path, password: Option<&str>, databases: u32) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--databases", &databases.to_string()])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"));
    if let Some(pw) = password {
        cmd.args(["--requirepass", pw]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed to run this test")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// A blocking RESP2 connection: write commands (pipelined if you like), read replies.
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Resp {
    pub fn connect(addr: SocketAddr) -> io::Result<Resp> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Resp {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Appends one command, as a RESP array of bulk strings, to `out`.
    pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Writes already-encoded commands.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut buf = Vec::new();
        Self::encode(args, &mut buf);
        self.send(&buf)?;
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.read_line()?;
        let (kind, rest) = line
            .split_first()
            .ok_or_else(|| io::Error::other("empty reply line"))?;
        let text = String::from_utf8_lossy(rest).into_owned();
        let int = || {
            text.parse::<i64>()
                .map_err(|_| io::Error::other(format!("bad integer {text:?}")))
        };
        Ok(match kind {
            b'+' => Reply::Simple(text.clone()),
            b'-' => Reply::Error(text.clone()),
            b':' => Reply::Int(int()?),
            b'$' => match usize::try_from(int()?) {
                Err(_) => Reply::Bulk(None),
                Ok(n) => {
                    let mut data = vec![0u8; n + 2];
                    io::Read::read_exact(&mut self.reader, &mut data)?;
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
            },
            b'*' => match usize::try_from(int()?) {
                Err(_) => Reply::Array(None),
                Ok(n) => Reply::Array(Some(
                    (0..n)
                        .map(|_| self.read_reply())
                        .collect::<io::Result<_>>()?,
                )),
            },
            other => {
                return Err(io::Error::other(format!(
                    "unexpected reply type {:?}",
                    *other as char
                )));
            }
        })
    }

    /// One CRLF-terminated line, without the CRLF.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-reply",
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }
}
