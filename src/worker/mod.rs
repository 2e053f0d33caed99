//! Workers: one OS thread per core, each with its own current-thread tokio runtime, its own
//! listening sockets (SO_REUSEPORT), buffer pool, histograms and connection count.
//!
//! A worker is driven by [`Command`]s from the control plane: add or remove listeners after a
//! reload, copy out histograms for a scrape, shut down. Everything a worker shares with other
//! threads is read-only (the routing table through `ArcSwap`) or its own counter slots.
//! Accepted connections never leave the worker that accepted them.

mod accept;
mod conns;
pub mod listener;
pub mod park;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::table::RoutingTable;
use crate::io::buffers::{BufferPool, VecPool};
use crate::metrics::histogram::WorkerHistograms;
use crate::proto::keyed::Registry;
use crate::proto::memcache::Ascii;
use crate::proto::redis::Resp;
pub use accept::{Accepted, Held};
use conns::ConnTracker;
pub use conns::{Drain, Wake};

/// Free buffers a worker keeps for reuse (the rest go back to the allocator).
const CACHED_BUFFERS: usize = 256;
/// Starting size of a Redis/Memcached connection's read and write buffers.
const KEYED_BUFFER: usize = 16 * 1024;

/// What the control plane asks of a worker.
#[derive(Debug)]
pub enum Command {
    /// Start accepting on these sockets (this worker's own, already listening).
    AddListeners(Vec<(SocketAddr, std::net::TcpListener)>),
    /// Stop accepting on these addresses; open connections carry on.
    RemoveListeners(Vec<SocketAddr>),
    /// Copy out connect-time histograms of the endpoints in `live`.
    Collect {
        live: Arc<HashSet<u64>>,
        reply: oneshot::Sender<Vec<(u64, Histogram<u64>)>>,
    },
    /// Stop accepting, let connections finish until `deadline`, then exit.
    Shutdown { deadline: Instant },
}

/// State shared by the tasks of one worker (never by two workers).
#[derive(Debug)]
pub struct Worker {
    pub id: usize,
    tables: Arc<ArcSwap<RoutingTable>>,
    /// This worker's handle on the table in use, so that a connection takes its reference with
    /// a non-atomic `Rc` increment instead of an atomic one on a count all workers share.
    current: RefCell<Rc<TableRef>>,
    pub histograms: WorkerHistograms,
    pub buffers: BufferPool,
    /// Request and reply buffers of the Redis and Memcached engines.
    pub vecs: VecPool,
    /// This worker's pipelined connections to Redis servers.
    pub redis: Registry<Resp>,
    /// This worker's pipelined connections to memcached servers.
    pub memcache: Registry<Ascii>,
    /// This worker's idle keep-alive connections to HTTP upstreams.
    pub http_pool: Rc<crate::proto::http::Pool>,
    /// This worker's HTTP retry budget.
    pub http_budget: crate::proto::http::RetryBudget,
    /// This worker's HTTP client connections, swept for idleness once a second.
    pub idle: Rc<crate::proto::http::IdleSweep>,
    conns: Rc<ConnTracker>,
    /// Tells long-lived client connections (redis, memcache) that the worker is draining.
    pub drain: Drain,
    /// Idle connections taken apart until they have something to do.
    pub park: Rc<park::Lot>,
}

impl Worker {
    /// The routing table in use, for a new connection or request. Checking for a newer table is
    /// a read of the shared `ArcSwap` pointer; only the first call after a reload pays an
    /// atomic increment to adopt it.
    pub fn table(&self) -> Rc<TableRef> {
        let latest = self.tables.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(&latest, &current.0) {
            *current = Rc::new(TableRef(arc_swap::Guard::into_inner(latest)));
        }
        current.clone()
    }
}

/// A worker's strong reference to a routing table, shared by that worker's connections
/// through an `Rc` (see [`Worker::table`]).
#[derive(Debug)]
pub struct TableRef(Arc<RoutingTable>);

impl std::ops::Deref for TableRef {
    type Target = RoutingTable;

    fn deref(&self) -> &RoutingTable {
        &self.0
    }
}

/// The control plane's handle on a worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    pub id: usize,
    pub commands: mpsc::UnboundedSender<Command>,
    /// Resolves (with an error, as the sender drops) when the worker thread has finished.
    pub done: oneshot::Receiver<()>,
}

/// Starts worker `id` on its own thread, accepting on `listeners`. Returns once the worker is
/// pinned (if asked), has its runtime and accepts, so the process reports ready only when every
/// worker serves; an error if the worker could not start.
pub fn spawn(
    id: usize,
    tables: Arc<ArcSwap<RoutingTable>>,
    buffer_size: usize,
    core: Option<usize>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
) -> std::io::Result<WorkerHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    std::thread::Builder::new()
        .name(format!("corelane-w{id}"))
        .spawn(move || {
            let _done = done_tx;
            if let Some(core) = core {
                pin_to(core);
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            // The parking lot's epoll instance registers with this runtime.
            let lot = match rt.block_on(async { park::Lot::new() }) {
                Ok(lot) => Rc::new(lot),
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let worker = Rc::new(Worker {
                id,
                park: lot,
                current: RefCell::new(Rc::new(TableRef(tables.load_full()))),
                tables,
                histograms: WorkerHistograms::default(),
                buffers: BufferPool::new(buffer_size, CACHED_BUFFERS),
                vecs: VecPool::new(KEYED_BUFFER, CACHED_BUFFERS),
                redis: Registry::new(id, crate::proto::redis::hello),
                memcache: Registry::new(id, |_| None),
                http_pool: Rc::default(),
                http_budget: Default::default(),
                idle: Rc::default(),
                conns: Rc::new(ConnTracker::default()),
                drain: Drain::default(),
            });
            run(&rt, worker, rx, listeners, &ready_tx);
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("worker thread exited while starting")))?;
    Ok(WorkerHandle {
        id,
        commands: tx,
        done: done_rx,
    })
}

/// Hands this worker's HTTP access log lines to the writer thread every quarter second.
async fn flush_access_log() {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        crate::proto::http::access_log::flush();
    }
}

/// The cores this process may run on, in order, for pinning.
pub fn allowed_cores() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn pin_to(core: usize) {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    let result = set
        .set(core)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
    if let Err(e) = result {
        tracing::warn!(core, error = %e, "could not pin worker to core");
    }
}

fn run(
    rt: &tokio::runtime::Runtime,
    worker: Rc<Worker>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    ready: &std::sync::mpsc::SyncSender<std::io::Result<()>>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, async move {
        let mut accepting: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
        add_listeners(&worker, &mut accepting, listeners);
        tokio::task::spawn_local(flush_access_log());
        tokio::task::spawn_local(crate::proto::http::idle_sweep(
            worker.idle.clone(),
            worker.http_pool.clone(),
        ));
        tokio::task::spawn_local(park::run(worker.clone(), worker.park.clone()));
        let _ = ready.send(Ok(()));
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::AddListeners(l) => add_listeners(&worker, &mut accepting, l),
                Command::RemoveListeners(addrs) => {
                    for addr in addrs {
                        if let Some(h) = accepting.remove(&addr) {
                            h.abort();
                            tracing::info!(worker = worker.id, %addr, "listener closed; its connections drain");
                        }
                    }
                }
                Command::Collect { live, reply } => {
                    let _ = reply.send(worker.histograms.snapshot(&live));
                }
                Command::Shutdown { deadline } => {
                    for (_, h) in accepting.drain() {
                        h.abort();
                    }
                    worker.drain.start();
                    worker.park.drain(&worker);
                    let left = worker.conns.open();
                    tracing::info!(worker = worker.id, open = left, "draining");
                    let wait = deadline.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(wait, worker.conns.wait_idle()).await.is_err() {
                        tracing::warn!(worker = worker.id, open = worker.conns.open(), "shutdown timeout: closing remaining connections");
                    }
                    worker.park.close_all();
                    break;
                }
            }
        }
    });
    // Dropping the LocalSet closes whatever is still open; access log lines written as
    // responses are cut go to the writer with the rest.
    drop(local);
    crate::proto::http::access_log::flush();
}

fn add_listeners(
    worker: &Rc<Worker>,
    accepting: &mut HashMap<SocketAddr, JoinHandle<()>>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
) {
    for (addr, std_listener) in listeners {
        match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => {
                let h = tokio::task::spawn_local(accept::accept_loop(worker.clone(), l, addr));
                if let Some(old) = accepting.insert(addr, h) {
                    old.abort();
                }
            }
            Err(e) => {
                tracing::error!(worker = worker.id, %addr, error = %e, "cannot register listener")
            }
        }
    }
}

/// Pause after an accept error that signals resource exhaustion (EMFILE, ENOBUFS), so a full
/// file table does not turn the accept loop into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
