//! Opening an upstream connection: pick, connect with a timeout, and on failure try the next
//! endpoint the policy offers, up to the cluster's `connect_attempts` distinct endpoints.
//!
//! The endpoint's `active` gauge is raised when it is picked, before the connect completes,
//! so least_conn and p2c see connections being opened (as nginx counts them). Every failed
//! attempt counts a connect error on its endpoint; a connect time is recorded for each
//! success.
//!
//! Health: endpoints that are down or ejected are not picked (unless the cluster is in panic
//! mode), and each failed attempt is reported to the cluster's outlier detector. A successful
//! connect is not yet a success for the detector: the protocol engine reports the outcome once
//! it knows whether the endpoint answered (see `Cluster::succeeded`).

use std::net::IpAddr;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Cluster;
use crate::config::model::limits::MAX_CONNECT_ATTEMPTS;
use crate::metrics::counters::OwnedGauge;
use crate::metrics::histogram::WorkerHistograms;
use crate::metrics::stats::EndpointStats;

/// An established upstream connection and the endpoint it goes to.
#[derive(Debug)]
pub struct Upstream {
    pub stream: TcpStream,
    pub endpoint: usize,
    /// Holds the endpoint's `active` gauge up for as long as the connection lives, across
    /// tasks (a parked TCP connection keeps it).
    pub active: OwnedGauge<EndpointStats>,
}

/// Why no upstream connection could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoUpstream {
    /// Every endpoint is down or ejected (and the cluster is not in panic mode).
    NoneHealthy,
    /// Every attempt failed to connect or timed out.
    Unreachable,
}

impl NoUpstream {
    pub fn reason(self) -> &'static str {
        match self {
            NoUpstream::NoneHealthy => "no healthy endpoint",
            NoUpstream::Unreachable => "no endpoint reachable",
        }
    }
}

/// Connects `worker` to an endpoint of `cluster` for a client at `client`. Hash policies key
/// on the client's IP address.
pub async fn connect(
    cluster: &Cluster,
    worker: usize,
    histograms: &WorkerHistograms,
    client: IpAddr,
) -> Result<Upstream, NoUpstream> {
    let mut key_buf = [0u8; 64];
    let key: &[u8] = if cluster.balancer.uses_key() {
        client_key(client, &mut key_buf)
    } else {
        &[]
    };
    let mut tried = [0usize; MAX_CONNECT_ATTEMPTS as usize];
    let attempts = cluster.connect_attempts.min(tried.len());
    let healthy_only = !cluster.panicking();
    for n in 0..attempts {
        let Some(i) =
            cluster
                .balancer
                .pick(&cluster.endpoints, worker, key, &tried[..n], healthy_only)
        else {
            return Err(if n == 0 {
                NoUpstream::NoneHealthy
            } else {
                NoUpstream::Unreachable
            });
        };
        tried[n] = i;
        let endpoint = &cluster.endpoints[i];
        let counters = endpoint.stats.workers.get(worker);
        let active = OwnedGauge::new(endpoint.stats.clone(), worker, |s, w| {
            &s.workers.get(w).active
        });
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(cluster.connect_timeout, TcpStream::connect(endpoint.addr)).await;
        match outcome {
            Ok(Ok(stream)) => {
                histograms.record(endpoint.stats.uid, started.elapsed());
                counters.connections.inc();
                // Small writes (request/response traffic) must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Ok(Upstream {
                    stream,
                    endpoint: i,
                    active,
                });
            }
            Ok(Err(error)) => {
                tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, attempt = n + 1, %error, "upstream connect failed");
                cluster.failed(i, &format!("connect: {error}"));
            }
            Err(_) => {
                tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.addr, attempt = n + 1, timeout = ?cluster.connect_timeout, "upstream connect timed out");
                cluster.failed(i, "connect timed out");
            }
        }
        counters.connect_errors.inc();
    }
    Err(NoUpstream::Unreachable)
}

/// The text of a client address as the hash key (`$remote_addr` in nginx terms), written into
/// `buf` without allocating. Returns the used prefix.
fn client_key(ip: IpAddr, buf: &mut [u8; 64]) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IPv6 address is at most 45 characters, so this always fits.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &buf[..len]
}
