//! Upgraded connections (WebSocket and any other `Upgrade`): once the upstream answers 101,
//! the client's and the upstream's connections are joined ([`crate::io::splice`]) until
//! either side closes, or nothing arrives from either side for the listener's `idle_timeout`.
//! The client's side is its connection (HTTP/1.1, hyper's upgrade) or, for WebSocket over
//! HTTP/2, its stream (`super::h2::Tunnel`).
//!
//! The tunnel owns a dedicated upstream connection (it never returns to the pool).

use std::rc::Rc;
use std::time::Duration;

use hyper::Request;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::ClientBody;
use crate::io::splice::{Spliced, Timing, splice};
use crate::metrics::counters::OwnedGauge;
use crate::metrics::stats::EndpointStats;
use crate::worker::Worker;

/// The client's side of a tunnel to be.
pub enum Client {
    /// An HTTP/1.1 connection, hyper's once it has sent the 101.
    Hyper(OnUpgrade),
    /// An HTTP/2 stream (RFC 8441).
    H2(super::h2::Tunnel),
}

impl Client {
    /// The client's side of the upgrade `req` asks for: its HTTP/2 stream if it came as one
    /// (taken out of the request, whose body is then empty), else hyper's upgrade.
    pub fn of(req: &mut Request<ClientBody>) -> Client {
        match std::mem::replace(req.body_mut(), ClientBody::Empty) {
            ClientBody::H2(stream) => Client::H2(super::h2::Tunnel::new(stream)),
            other => {
                *req.body_mut() = other;
                Client::Hyper(hyper::upgrade::on(req))
            }
        }
    }
}

/// `worker`: the buffers are its own (`crate::io::buffers`), lent for each read. `held`: the
/// upstream endpoint's `active` gauge, raised while the tunnel lives (least-connections
/// balancing counts a tunnel as the connection it is).
pub async fn run(
    worker: Rc<Worker>,
    client: Client,
    upstream: OnUpgrade,
    idle: Duration,
    held: Option<OwnedGauge<EndpointStats>>,
) {
    let _held = held;
    let mut upstream = match upstream.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => {
            tracing::debug!(error = %e, "upstream upgrade failed");
            return;
        }
    };
    match client {
        Client::Hyper(c) => match c.await {
            Ok(c) => join(&worker, &mut TokioIo::new(c), &mut upstream, idle).await,
            Err(e) => tracing::debug!(error = %e, "client upgrade failed"),
        },
        Client::H2(mut stream) => {
            let gone = stream.gone();
            tokio::select! {
                () = join(&worker, &mut stream, &mut upstream, idle) => {}
                () = gone => tracing::debug!("tunnel's stream gone; closed"),
            }
        }
    }
}

async fn join<A, B>(worker: &Worker, client: &mut A, upstream: &mut B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let timing = Timing {
        idle,
        park_after: None,
        idle_since: tokio::time::Instant::now(),
    };
    match splice(client, upstream, timing, &worker.buffers).await {
        Spliced::Done(up, down) => tracing::debug!(up, down, "tunnel closed"),
        Spliced::Idle => tracing::debug!(?idle, "tunnel idle; closed"),
        Spliced::Failed(e) => tracing::debug!(error = %e, "tunnel failed"),
        // Not asked for (`park_after` is None).
        Spliced::Parked { .. } => {}
    }
}
