//! Protocol engines: what a listener does with an accepted connection.
//!
//! Each engine is a function `serve(worker, accepted)` run as a task of the accepting worker.
//! Engines: plain TCP, HTTP (on hyper), Redis and Memcached (sans-IO codecs, using `io` for
//! socket work), MySQL read/write splitting (sans-IO packets, its own session driver).

pub mod http;
pub mod keyed;
pub mod memcache;
pub mod mysql;
pub mod redis;
pub mod tcp;
