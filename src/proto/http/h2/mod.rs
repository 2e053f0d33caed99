//! corelane's own HTTP/2 server: HTTP/2 client connections (h2c with prior knowledge, or TLS
//! once ALPN chose `h2`) on listeners with `fast_path` on. Each request goes through the same
//! [`super::handle`] as every other (routing, header rules, forwarding with the fast path's
//! upstream sockets or hyper's client, metrics, access log), and its response comes back as
//! HTTP/2 frames.
//!
//! The layers, bytes up:
//! - [`frame`]: frame headers and payload layouts;
//! - [`hpack`]: header compression (with [`hpack::huffman`]);
//! - [`fields`]: a decoded request header list, checked against RFC 9113 8;
//! - [`conn`]: the connection's state machine, sans-IO: streams, flow control, settings,
//!   errors, and the limits that keep a hostile client in bounds;
//! - [`serve`]: the driver: the socket, a task per request, request and response bodies,
//!   timeouts, draining, and parking an idle connection;
//! - [`websocket`]: WebSocket over HTTP/2 (RFC 8441), a stream joined to an upstream's
//!   HTTP/1.1 upgrade.
//!
//! Why by hand (the issue asks for hyper/h2 unless a measured reason says otherwise): with
//! hyper's server (the h2 crate) every HTTP/2 connection kept 24 KiB of read and write
//! buffers and its stream store for its whole life, about 29 KB per idle client, and could
//! not be parked, against the 0.5 KB an idle client may cost; and h2c cost corelane 11 µs of
//! user CPU per request against 3.3 µs for HTTP/1.1 on the fast path, much of it in the h2
//! crate's stream store (behind a mutex), its frame queues and hyper's stream tasks
//! (bench/RESULTS.md). Here a connection borrows its read buffer from the worker's pool only
//! while bytes are in flight, and an idle one parks with only its HPACK table and settings.
//!
//! Not here: TLS (`super::serve_tls`), HTTP/2 to upstreams (hyper's client, `super::forward`),
//! plain `CONNECT` (answered 501), server push.

pub mod conn;
mod fast;
pub mod fields;
pub mod frame;
pub mod hpack;
mod serve;
mod stream;
mod websocket;

pub(super) use serve::{End, Start, serve};
pub use stream::{RecvBody, Tunnel};

/// Whether bytes a client sent first are (the start of) HTTP/2's connection preface: its first
/// line, `PRI * HTTP/2.0`. What follows is the HTTP/2 server's to check, which answers a bad
/// preface in HTTP/2's terms (GOAWAY, PROTOCOL_ERROR).
pub fn is_preface(first: &[u8]) -> bool {
    let n = first.len().min(16);
    n > 0 && first[..n] == frame::PREFACE[..n]
}
