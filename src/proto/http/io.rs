//! The HTTP engine's own socket needs beyond [`crate::io::counted`].

use tokio::net::TcpStream;

pub use crate::io::counted::{ClientSide, Io, UpstreamSide};
pub use crate::io::detach::TlsClient;

/// What a client too slow to send its request headers is told before its connection closes.
pub const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 20\r\nconnection: close\r\n\r\n408 Request Timeout\n";

/// Best effort: tells a client that was too slow to send its request headers, then the caller
/// closes the connection.
pub fn send_408(stream: &TcpStream) {
    let _ = stream.try_write(RESPONSE_408);
}
