//! Upgraded connections (WebSocket and any other `Upgrade`): once the upstream answers 101,
//! the client's and the upstream's connections are joined ([`crate::io::splice`]) until
//! either side closes, or nothing arrives from either side for the listener's `idle_timeout`.
//!
//! The tunnel owns a dedicated upstream connection (it never returns to the pool).

use std::rc::Rc;
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::io::splice::{Spliced, Timing, splice};
use crate::worker::Worker;

/// `worker`: the buffers are its own (`crate::io::buffers`), lent for each read.
pub async fn run(worker: Rc<Worker>, client: OnUpgrade, upstream: OnUpgrade, idle: Duration) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            tracing::debug!(client = ?c.err(), upstream = ?u.err(), "upgrade failed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    let timing = Timing {
        idle,
        park_after: None,
        idle_since: tokio::time::Instant::now(),
    };
    match splice(&mut client, &mut upstream, timing, &worker.buffers).await {
        Spliced::Done(up, down) => tracing::debug!(up, down, "tunnel closed"),
        Spliced::Idle => tracing::debug!(?idle, "tunnel idle; closed"),
        Spliced::Failed(e) => tracing::debug!(error = %e, "tunnel failed"),
        // Not asked for (`park_after` is None).
        Spliced::Parked { .. } => {}
    }
}
