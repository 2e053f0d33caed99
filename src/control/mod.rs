//! The control plane: owns the routing table's `ArcSwap`, the workers' command channels and
//! the set of bound listener addresses; loads the control file at start and on reload; serves
//! the admin API ([`admin`]) and handles signals ([`signals`]).
//!
//! It runs on the main thread with its own current-thread runtime, so [`Control`] needs no
//! lock: admin requests and signals are tasks of that one thread, and [`Control::reload`] does
//! not await, so two reloads can never interleave.
//!
//! Reload, step by step (a failure at any step before the swap changes nothing):
//! 1. read and validate the file;
//!    (TLS listeners: read and check their certificate files);
//! 2. bind the sockets of listeners that are new (by address), one per worker; put them in the
//!    listening state only once all are bound;
//! 3. build the new table, handing on counters of what stays;
//! 4. publish it with one `ArcSwap::store`;
//! 5. start, keep or stop health checks to match ([`checks`]);
//! 6. tell each worker which listeners to close and which sockets to start accepting on.

pub mod admin;
mod checks;
pub mod probe;
pub mod probe_mysql;
pub mod signals;
mod status;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;

use crate::config::table::RoutingTable;
use crate::config::{self, Config, ConfigError, diff};
use crate::worker::{self, Command, WorkerHandle, listener};

/// The outcome of the latest load of the control file, for /status.
#[derive(Debug, Clone)]
pub struct LastReload {
    pub at: SystemTime,
    pub generation: u64,
    pub error: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct Control {
    path: PathBuf,
    pub tables: Arc<ArcSwap<RoutingTable>>,
    workers: Vec<WorkerHandle>,
    bound: HashSet<SocketAddr>,
    pub started: SystemTime,
    pub reloads_ok: u64,
    pub reloads_error: u64,
    pub last_success: SystemTime,
    pub last_reload: LastReload,
    pub draining: bool,
    /// The active health checks of the table in use.
    checks: checks::Checkers,
}

impl Control {
    /// Binds everything `config` asks for, starts the workers and returns the control plane
    /// with the admin socket. Must be called inside the control runtime.
    pub fn start(
        path: &Path,
        config: Config,
    ) -> Result<(Control, std::net::TcpListener), ConfigError> {
        let n = config.workers;
        let admin = listener::bind_admin(config.admin.listen)?;
        let mut per_worker: Vec<Vec<(SocketAddr, std::net::TcpListener)>> =
            (0..n).map(|_| Vec::new()).collect();
        let bound = bind_listeners(config.listeners.iter(), n, &mut per_worker)?
            .into_iter()
            .collect();

        let tls = crate::tls::load(&config)?;
        let tables = Arc::new(ArcSwap::from_pointee(RoutingTable::build(
            config.clone(),
            1,
            n,
            None,
            &tls,
        )));
        let cores = if config.pin_workers {
            worker::allowed_cores()
        } else {
            Vec::new()
        };
        let mut workers = Vec::with_capacity(n);
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let h = worker::spawn(id, tables.clone(), config.buffer_size, core, listeners)
                .map_err(|e| ConfigError::Invalid {
                    key: "workers".into(),
                    reason: format!("cannot start worker thread {id}: {e}"),
                })?;
            workers.push(h);
        }
        start_access_log(&config)?;
        let mut checks = checks::Checkers::default();
        checks.reconcile(&tables.load());
        let now = SystemTime::now();
        tracing::info!(
            file = %path.display(),
            workers = n,
            listeners = config.listeners.len(),
            clusters = config.clusters.len(),
            health_checks = checks.count(),
            admin = %config.admin.listen,
            "corelane started"
        );
        Ok((
            Control {
                path: path.to_owned(),
                tables,
                workers,
                bound,
                started: now,
                reloads_ok: 0,
                reloads_error: 0,
                last_success: now,
                last_reload: LastReload {
                    at: now,
                    generation: 1,
                    error: None,
                    notes: Vec::new(),
                },
                draining: false,
                checks,
            },
            admin,
        ))
    }

    /// Re-reads the control file and swaps in the new table; on any error the running table
    /// stays. Returns the generation in use afterwards, or the error.
    pub fn reload(&mut self) -> Result<u64, ConfigError> {
        let at = SystemTime::now();
        match self.try_reload() {
            Ok((generation, notes)) => {
                self.reloads_ok += 1;
                self.last_success = at;
                for note in &notes {
                    tracing::warn!(file = %self.path.display(), "{note}");
                }
                tracing::info!(file = %self.path.display(), generation, "control file reloaded");
                self.last_reload = LastReload {
                    at,
                    generation,
                    error: None,
                    notes,
                };
                Ok(generation)
            }
            Err(e) => {
                self.reloads_error += 1;
                let generation = self.tables.load().generation;
                tracing::error!(file = %self.path.display(), key = e.key(), error = %e, generation, "reload rejected; the running configuration stays");
                self.last_reload = LastReload {
                    at,
                    generation,
                    error: Some(e.to_string()),
                    notes: Vec::new(),
                };
                Err(e)
            }
        }
    }

    fn try_reload(&mut self) -> Result<(u64, Vec<String>), ConfigError> {
        let mut new = config::load(&self.path)?;
        let old = self.tables.load_full();
        let notes = diff::restart_only(&old.config, &new);
        // Keep what only a restart can change at its running value, so /status tells the truth.
        new.workers = old.config.workers;
        new.pin_workers = old.config.pin_workers;
        new.buffer_size = old.config.buffer_size;
        new.admin = old.config.admin.clone();
        new.log = old.config.log.clone();
        // Validation checked listeners against the file's admin address; the running one is
        // what matters until a restart (both are SO_REUSEPORT, so a bind would not catch it).
        if let Some(l) = new.listeners.iter().find(|l| l.listen == new.admin.listen) {
            return Err(ConfigError::Invalid {
                key: format!("listeners.{}.listen", l.name),
                reason: format!(
                    "address {} is the running admin address (admin.listen changes take effect on restart)",
                    l.listen
                ),
            });
        }

        // Certificates are read now: a bad or missing file fails the reload here.
        let tls = crate::tls::load(&new)?;
        start_access_log(&new)?;
        let d = diff::listeners(&self.bound, &new);
        let n = self.workers.len();
        let mut per_worker: Vec<Vec<(SocketAddr, std::net::TcpListener)>> =
            (0..n).map(|_| Vec::new()).collect();
        let added = bind_listeners(d.added.iter().copied(), n, &mut per_worker)?;
        let removed = d.removed;

        let generation = old.generation + 1;
        let table = RoutingTable::build(new, generation, n, Some(&old), &tls);
        self.tables.store(Arc::new(table));
        self.checks.reconcile(&self.tables.load());

        for (w, listeners) in self.workers.iter().zip(per_worker) {
            if !removed.is_empty() {
                self.send(w, Command::RemoveListeners(removed.clone()));
            }
            if !listeners.is_empty() {
                self.send(w, Command::AddListeners(listeners));
            }
        }
        for addr in &removed {
            self.bound.remove(addr);
            tracing::info!(%addr, "listener removed");
        }
        for addr in added {
            tracing::info!(%addr, "listener added");
            self.bound.insert(addr);
        }
        Ok((generation, notes))
    }

    fn send(&self, w: &WorkerHandle, cmd: Command) {
        if w.commands.send(cmd).is_err() {
            tracing::error!(worker = w.id, "worker is gone; command dropped");
        }
    }

    /// Command channels of all workers (for scrapes, which await replies outside any borrow).
    pub fn worker_channels(&self) -> Vec<tokio::sync::mpsc::UnboundedSender<Command>> {
        self.workers.iter().map(|w| w.commands.clone()).collect()
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Tells every worker to stop accepting and drain; returns what resolves as each finishes.
    pub fn begin_shutdown(&mut self) -> Vec<oneshot::Receiver<()>> {
        self.draining = true;
        let timeout = self.tables.load().config.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        tracing::info!(
            ?timeout,
            "shutting down: no new connections; waiting for open ones"
        );
        let mut done = Vec::new();
        for w in &mut self.workers {
            let _ = w.commands.send(Command::Shutdown { deadline });
            let (_tx, rx) = oneshot::channel();
            done.push(std::mem::replace(&mut w.done, rx));
        }
        done
    }
}

/// Starts the access log writer if a listener wants one (once; its file is restart-only).
fn start_access_log(config: &Config) -> Result<(), ConfigError> {
    if !config.listeners.iter().any(|l| l.access_log) {
        return Ok(());
    }
    crate::proto::http::access_log::start(config.log.access_log.as_deref()).map_err(|e| {
        ConfigError::Invalid {
            key: "log.access_log".into(),
            reason: format!("cannot open the access log: {e}"),
        }
    })
}

/// Binds all `listeners` (every worker's socket) before putting any into the listening state,
/// appending each worker's sockets to `per_worker`. Returns the addresses bound.
fn bind_listeners<'a>(
    listeners: impl Iterator<Item = &'a config::model::ListenerConfig>,
    workers: usize,
    per_worker: &mut [Vec<(SocketAddr, std::net::TcpListener)>],
) -> Result<Vec<SocketAddr>, ConfigError> {
    let bound = listeners
        .map(|l| listener::bind(l, workers).map(|b| (l.name.clone(), b)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut addrs = Vec::with_capacity(bound.len());
    let mut ready = Vec::with_capacity(bound.len());
    for (name, b) in bound {
        let addr = b.addr;
        let sockets = listener::listen(b).map_err(|e| ConfigError::Invalid {
            key: format!("listeners.{name}.listen"),
            reason: format!("cannot listen on {addr}: {e}"),
        })?;
        ready.push((addr, sockets));
    }
    for (addr, sockets) in ready {
        for (i, s) in sockets.into_iter().enumerate() {
            per_worker[i].push((addr, s));
        }
        addrs.push(addr);
    }
    Ok(addrs)
}

/// Seconds since the Unix epoch, for JSON and metrics.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
