//! The counters kept for each listener, cluster and endpoint, one slot per worker.
//!
//! A stats object is created when its listener, cluster or endpoint first appears in a
//! routing table and handed on (the same `Arc`) to every later table in which it still
//! exists, so a reload never resets a counter. The control plane does the handing on
//! (`config::table`); workers only write their own slot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::counters::{Counter, PerWorker};

#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Connections accepted (including those then rejected).
    pub accepted: Counter,
    /// Connections open now (gauge).
    pub active: Counter,
    /// Of those, connections parked while idle (gauge; `worker::park`).
    pub parked: Counter,
    /// Connections closed at once because `max_connections` was reached.
    pub rejected: Counter,
    /// Bytes received from clients.
    pub bytes_in: Counter,
    /// Bytes sent to clients.
    pub bytes_out: Counter,
    /// HTTP requests refused before they were routed, by [`Refusal`].
    pub http_refused: [Counter; Refusal::ALL.len()],
    /// HTTP/2: RST_STREAM frames from clients, and those corelane sent with an error code.
    pub h2_resets_received: Counter,
    pub h2_resets_sent: Counter,
    /// HTTP/2: connections corelane ended with a GOAWAY carrying an error, by error code.
    pub h2_connection_errors: [Counter; 14],
}

/// Why corelane answered an HTTP request before routing it: the request never reached a route,
/// so it is counted per listener (`corelane_http_refused_requests`) rather than per route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (400); over HTTP/2, a request reset with `PROTOCOL_ERROR` as malformed.
    Malformed,
    /// Its head (on the fast path, its head and the small body read with it) did not arrive
    /// within `header_timeout` (408).
    Timeout,
    /// Its head was over `max_header_size` or `max_headers` (431).
    TooLarge,
    /// Its target was over 65,534 bytes (414; hyper's limit, reachable only with a
    /// `max_header_size` above 64 KiB).
    UriTooLong,
    /// A method corelane does not serve there: `CONNECT` over HTTP/2 (501).
    NotImplemented,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::Malformed,
        Refusal::Timeout,
        Refusal::TooLarge,
        Refusal::UriTooLong,
        Refusal::NotImplemented,
    ];

    /// The status corelane answers with (the label of the series).
    pub fn status(self) -> u16 {
        match self {
            Refusal::Malformed => 400,
            Refusal::Timeout => 408,
            Refusal::TooLarge => 431,
            Refusal::UriTooLong => 414,
            Refusal::NotImplemented => 501,
        }
    }

    /// [`Refusal::status`] as a label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "400",
            Refusal::Timeout => "408",
            Refusal::TooLarge => "431",
            Refusal::UriTooLong => "414",
            Refusal::NotImplemented => "501",
        }
    }
}

#[derive(Debug)]
pub struct ListenerStats {
    pub workers: PerWorker<ListenerCounters>,
    /// Connections open across all workers, kept only when `max_connections` is set: a
    /// process-wide limit needs one shared count. Touched once per connection, never per byte.
    pub open: AtomicU64,
}

impl ListenerStats {
    pub fn new(workers: usize) -> Self {
        ListenerStats {
            workers: PerWorker::new(workers),
            open: AtomicU64::new(0),
        }
    }

    /// Reserves a connection slot under `max`; `false` when the listener is full.
    pub fn try_open(&self, max: u64) -> bool {
        if self.open.fetch_add(1, Relaxed) >= max {
            self.open.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    pub fn close(&self) {
        self.open.fetch_sub(1, Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Connections that failed because no endpoint could be reached within the attempts.
    pub unavailable: Counter,
    /// HTTP responses to requests forwarded to the cluster, by status class (1xx..5xx),
    /// corelane's own error responses included.
    pub http_responses: StatusClasses,
}

#[derive(Debug)]
pub struct ClusterStats {
    /// Process-unique id; keys this cluster's HTTP latency histograms in each worker.
    pub uid: u64,
    pub workers: PerWorker<ClusterCounters>,
}

impl ClusterStats {
    pub fn new(workers: usize) -> Self {
        ClusterStats {
            uid: next_uid(),
            workers: PerWorker::new(workers),
        }
    }
}

/// Counters of HTTP responses by status class: `[1xx, 2xx, 3xx, 4xx, 5xx]`.
#[derive(Debug, Default)]
pub struct StatusClasses(pub [Counter; 5]);

impl StatusClasses {
    pub const LABELS: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    pub fn count(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.0[i].inc();
    }
}

/// An HTTP route's counters (the listener's requests that no route matched have one too).
#[derive(Debug, Default)]
pub struct RouteCounters {
    pub responses: StatusClasses,
}

#[derive(Debug)]
pub struct RouteStats {
    /// Process-unique id; keys this route's latency histograms in each worker.
    pub uid: u64,
    pub workers: PerWorker<RouteCounters>,
}

impl RouteStats {
    pub fn new(workers: usize) -> Self {
        RouteStats {
            uid: next_uid(),
            workers: PerWorker::new(workers),
        }
    }
}

/// Ids for histogram keys, unique across endpoints, clusters and routes.
fn next_uid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Relaxed)
}

#[derive(Debug, Default)]
pub struct EndpointCounters {
    /// Upstream connections established.
    pub connections: Counter,
    /// Upstream connections open or being opened now (gauge; least_conn and p2c read it).
    pub active: Counter,
    /// Connect attempts that failed (refused, unreachable, timed out).
    pub connect_errors: Counter,
    /// Bytes received from the endpoint.
    pub bytes_in: Counter,
    /// Bytes sent to the endpoint.
    pub bytes_out: Counter,
    /// Requests sent to the endpoint (redis and memcache listeners).
    pub requests: Counter,
    /// Requests corelane answered with an error because the endpoint failed, timed out or was
    /// in its backoff (redis and memcache listeners).
    pub request_errors: Counter,
}

#[derive(Debug)]
pub struct EndpointStats {
    /// Process-unique id; keys this endpoint's connect-time histograms in each worker.
    pub uid: u64,
    pub workers: PerWorker<EndpointCounters>,
}

impl EndpointStats {
    pub fn new(workers: usize) -> Self {
        EndpointStats {
            uid: next_uid(),
            workers: PerWorker::new(workers),
        }
    }
}
