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
use crate::io::buffers::BufferPool;
use crate::metrics::histogram::WorkerHistograms;
pub use accept::Accepted;
use conns::ConnTracker;

/// Free buffers a worker keeps for reuse (the rest go back to the allocator).
const CACHED_BUFFERS: usize = 256;

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
    pub tables: Arc<ArcSwap<RoutingTable>>,
    pub histograms: WorkerHistograms,
    pub buffers: BufferPool,
    conns: Rc<ConnTracker>,
}

/// The control plane's handle on a worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    pub id: usize,
    pub commands: mpsc::UnboundedSender<Command>,
    /// Resolves (with an error, as the sender drops) when the worker thread has finished.
    pub done: oneshot::Receiver<()>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts worker `id` on its own thread, accepting on `listeners` at once.
pub fn spawn(
    id: usize,
    tables: Arc<ArcSwap<RoutingTable>>,
    buffer_size: usize,
    core: Option<usize>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
) -> std::io::Result<WorkerHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("corelane-w{id}"))
        .spawn(move || {
            let _done = done_tx;
            if let Some(core) = core {
                pin_to(core);
            }
            let worker = Rc::new(Worker {
                id,
                tables,
                histograms: WorkerHistograms::default(),
                buffers: BufferPool::new(buffer_size, CACHED_BUFFERS),
                conns: Rc::new(ConnTracker::default()),
            });
            if let Err(e) = run(worker, rx, listeners) {
                tracing::error!(worker = id, error = %e, "worker failed to start");
            }
        })?;
    Ok(WorkerHandle {
        id,
        commands: tx,
        done: done_rx,
        thread,
    })
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
    worker: Rc<Worker>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut accepting: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
        add_listeners(&worker, &mut accepting, listeners);
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
                    let left = worker.conns.open();
                    tracing::info!(worker = worker.id, open = left, "draining");
                    let wait = deadline.saturating_duration_since(Instant::now());
                    if tokio::time::timeout(wait, worker.conns.wait_idle()).await.is_err() {
                        tracing::warn!(worker = worker.id, open = worker.conns.open(), "shutdown timeout: closing remaining connections");
                    }
                    break;
                }
            }
        }
    });
    // Dropping the LocalSet and runtime closes whatever is still open.
    Ok(())
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
