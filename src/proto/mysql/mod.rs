//! The MySQL/MariaDB engine: read/write splitting behind one client-facing login.
//!
//! Layers, bottom up: [`packet`] frames packets and [`wire`] reads and writes payloads (both
//! sans-IO, with golden vectors from a real MariaDB server and client, every-prefix tests and
//! a fuzz target); [`auth`] is the password math; [`reply`] finds where a command's reply ends
//! and what status it left; [`classify`] decides where a statement may run; [`backend`] is
//! corelane's own client side towards a server; [`stmt`] maps prepared statements;
//! [`session`] drives one client connection.

pub mod auth;
pub mod backend;
pub mod classify;
pub mod client;
pub mod packet;
pub mod reply;
pub mod session;
pub mod stmt;
pub mod wire;
