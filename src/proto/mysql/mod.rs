//! MySQL/MariaDB protocol pieces for the read/write splitting engine (an open issue): the
//! sans-IO packet framing ([`packet`]) and payload formats ([`wire`]), each with golden
//! vectors captured from a real MariaDB server and client, every-prefix tests and a fuzz
//! target. The engine itself (client handshake, routing, session state) is not here yet.

pub mod auth;
pub mod packet;
pub mod wire;
