//! Listening sockets: one per worker per listener, all bound to the same address with
//! SO_REUSEPORT so the kernel spreads incoming connections over the workers and no accepted
//! connection is ever handed between threads.
//!
//! Binding is split from listening so a reload can bind every new socket first and back out,
//! changing nothing, if any bind fails; only then are the sockets put into the listening state
//! (which is when the kernel starts queueing connections on them).

use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ConfigError;
use crate::config::model::ListenerConfig;

/// Sockets bound for one listener, one per worker, not yet listening.
#[derive(Debug)]
pub struct Bound {
    pub addr: SocketAddr,
    backlog: u32,
    sockets: Vec<Socket>,
}

/// Binds `workers` sockets for `l`. The error names `listeners.<name>.listen`.
pub fn bind(l: &ListenerConfig, workers: usize) -> Result<Bound, ConfigError> {
    let sockets = (0..workers.max(1))
        .map(|_| bind_one(l.listen))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| ConfigError::Invalid {
            key: format!("listeners.{}.listen", l.name),
            reason: format!("cannot bind {}: {e}", l.listen),
        })?;
    Ok(Bound {
        addr: l.listen,
        backlog: l.backlog,
        sockets,
    })
}

/// Puts bound sockets into the listening state; returns one std listener per worker.
pub fn listen(b: Bound) -> std::io::Result<Vec<TcpListener>> {
    let backlog = i32::try_from(b.backlog).unwrap_or(i32::MAX);
    b.sockets
        .into_iter()
        .map(|s| {
            s.listen(backlog)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        })
        .collect()
}

/// Binds (without listening) one socket the way `run` would, to tell whether it could.
pub fn probe(addr: SocketAddr) -> std::io::Result<()> {
    bind_one(addr).map(drop)
}

/// The admin listener: one socket for the control plane. It is bound like the listeners
/// (SO_REUSEPORT), so `corelane check` on the file of a running instance passes, and a new
/// binary can start beside the old one during an upgrade.
pub fn bind_admin(addr: SocketAddr) -> Result<TcpListener, ConfigError> {
    let admin_err = |e: std::io::Error| ConfigError::Invalid {
        key: "admin.listen".into(),
        reason: format!("cannot bind {addr}: {e}"),
    };
    let s = bind_one(addr).map_err(admin_err)?;
    s.listen(128).map_err(admin_err)?;
    s.set_nonblocking(true).map_err(admin_err)?;
    Ok(s.into())
}

fn bind_one(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listener: one syscall per listener
    // instead of one per connection.
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}
