//! A real WebSocket echo server (the Python `websockets` library, Debian's python3-websockets)
//! on a loopback port of its own, for the tunnelling tests.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

const SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=None):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

/// The server; stopped when dropped.
pub struct WsEcho {
    child: Child,
    pub addr: SocketAddr,
}

impl WsEcho {
    pub fn start() -> WsEcho {
        let port = super::free_port();
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", SERVER, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with python3-websockets must be installed");
        let mut ready = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        WsEcho {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        }
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
