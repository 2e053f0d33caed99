//! The HTTP engine's own socket needs beyond [`crate::io::counted`].

use tokio::net::TcpStream;

pub use crate::io::counted::{ClientSide, Io, UpstreamSide};
pub use crate::io::detach::TlsClient;

/// What a client too slow to send its request headers is told before its connection closes.
pub const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 20\r\nconnection: close\r\n\r\n408 Request Timeout\n";

/// The length of [`RESPONSE_408`]'s body.
pub const BODY_408: u64 = 20;

/// Best effort: tells a client that was too slow to send its request headers, then the caller
/// closes the connection.
pub fn send_408(stream: &TcpStream) {
    let _ = stream.try_write(RESPONSE_408);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_408_body_is_as_long_as_said() {
        let at = super::RESPONSE_408
            .windows(4)
            .position(|w| w == b"\r\n\r\n");
        let body = at.map(|i| super::RESPONSE_408.len() - i - 4);
        assert_eq!(body, Some(super::BODY_408 as usize));
    }
}
