//! Protocol engines: what a listener does with an accepted connection.
//!
//! Each engine is a function `serve(worker, accepted)` run as a task of the accepting worker.
//! This issue has plain TCP; HTTP, Redis, Memcached and MySQL engines come later and keep
//! their codecs sans-IO, using `io` for socket work.

pub mod keyed;
pub mod memcache;
pub mod redis;
pub mod tcp;
