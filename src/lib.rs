//! corelane: a thread-per-core L4/L7 data-plane proxy.
//!
//! Where things are:
//! - [`config`]: control file -> validated [`config::Config`] -> [`config::table::RoutingTable`].
//! - [`control`]: the control plane (main thread): start-up, reload, admin API, signals.
//! - [`worker`]: one thread per core with its own runtime and SO_REUSEPORT sockets.
//! - [`proto`]: protocol engines run per connection (tcp, http, redis, memcache, mysql).
//! - [`tls`]: TLS termination (rustls) configurations built from the control file.
//! - [`upstream`]: clusters, load-balancing policies, connecting with failover.
//! - [`io`]: the byte-moving driver under the engines.
//! - [`metrics`]: per-worker counters, histograms, Prometheus exposition.
//!
//! The data path reads one immutable routing table through `ArcSwap` and writes only its own
//! worker's state; see DESIGN.md for the whole picture.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod control;
pub mod import;
pub mod io;
pub mod log;
pub mod metrics;
pub mod proto;
pub mod shard;
pub mod tls;
pub mod upstream;
pub mod worker;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

/// `corelane check`: validates the file and tries to bind every address it names.
/// Returns a one-line summary.
pub fn check(path: &Path) -> Result<String, config::ConfigError> {
    let cfg = config::load(path)?;
    tls::load(&cfg)?;
    let probe = |key: String, addr| {
        worker::listener::probe(addr).map_err(|e| config::ConfigError::Invalid {
            key,
            reason: format!("cannot bind {addr}: {e}"),
        })
    };
    probe("admin.listen".into(), cfg.admin.listen)?;
    for l in &cfg.listeners {
        probe(format!("listeners.{}.listen", l.name), l.listen)?;
    }
    Ok(format!(
        "{}: ok ({} listeners, {} clusters, {} workers)",
        path.display(),
        cfg.listeners.len(),
        cfg.clusters.len(),
        cfg.workers
    ))
}

/// `corelane run`: runs the proxy until SIGTERM/SIGINT and the drain that follows.
pub fn run(path: &Path) -> Result<(), String> {
    let cfg = config::load(path).map_err(|e| e.to_string())?;
    log::init(&cfg.log);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("corelane-ctl")
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let (ctl, admin) = control::Control::start(path, cfg).map_err(|e| e.to_string())?;
        let admin =
            tokio::net::TcpListener::from_std(admin).map_err(|e| format!("admin.listen: {e}"))?;
        let ctl = Rc::new(RefCell::new(ctl));
        tokio::task::spawn_local(control::admin::serve(admin, ctl.clone()));
        control::signals::run(ctl)
            .await
            .map_err(|e| format!("cannot install signal handlers: {e}"))
    })
}
