//! corelane's own HTTP/2 server, in layers from the bytes up (the driver that serves
//! connections with them follows):
//! - [`frame`]: frame headers and payload layouts;
//! - [`hpack`]: header compression (with [`hpack::huffman`]);
//! - [`fields`]: a decoded request header list, checked against RFC 9113 8;
//! - [`conn`]: the connection's state machine, sans-IO: streams, flow control, settings,
//!   errors, and the limits that keep a hostile client in bounds.

pub mod conn;
pub mod fields;
pub mod frame;
pub mod hpack;
