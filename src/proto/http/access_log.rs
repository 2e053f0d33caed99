//! The HTTP access log: one JSON line per request, for listeners with `access_log = true`.
//!
//! Off the hot path: a request appends its line to its worker's buffer (no lock, no syscall);
//! a full buffer (32 KiB), or the worker's flush every quarter second, hands the whole buffer
//! to one writer thread through a bounded channel, and only that thread writes to the file
//! (or standard output). If the writer falls 256 batches behind (a stalled pipe), batches are
//! dropped with a warning rather than held in memory.
//!
//! A line is written when the response has ended (or was cut, or the client left), so that it
//! can say how long the whole exchange took and how many body bytes went to the client; on
//! hyper's path the line waits with the response body ([`Pending`], boxed, only on listeners
//! that log).

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use serde::Serialize;

/// Bytes a worker gathers before handing them to the writer.
const BATCH: usize = 32 * 1024;

static SINK: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();
/// Batches waiting for the writer at most; past it, batches are dropped (and counted) rather
/// than kept in memory without bound.
const QUEUED: usize = 256;
/// Lines' batches dropped because the writer could not keep up.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Starts the writer thread, writing to `path` (`None`: standard output). Only the first
/// call does anything.
pub fn start(path: Option<&std::path::Path>) -> std::io::Result<()> {
    if SINK.get().is_some() {
        return Ok(());
    }
    let mut out: Box<dyn Write + Send> = match path {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUED);
    std::thread::Builder::new()
        .name("corelane-log".into())
        .spawn(move || {
            for batch in rx {
                if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                    // Nowhere left to report to; keep draining so workers never block.
                    continue;
                }
            }
        })?;
    let _ = SINK.set(tx);
    Ok(())
}

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// Unix time (seconds) the request arrived.
    pub ts: f64,
    pub listener: &'a str,
    /// `null` for a request refused before it was routed (a 400, 408, 414, 431 or 501 corelane
    /// gave).
    pub route: Option<&'a str>,
    pub client: &'a str,
    /// `null` where a refused request did not say it (or not readably).
    pub method: Option<&'a str>,
    pub host: Option<&'a str>,
    pub path: Option<&'a str>,
    pub status: u16,
    /// Response body bytes written to the client (on the fast path, a chunked body's chunk
    /// framing included, as it is relayed).
    pub bytes: u64,
    pub upstream: Option<String>,
    /// Milliseconds from the request's arrival to its response headers.
    pub duration_ms: f64,
    /// Milliseconds from the request's arrival to the end of its response (its last byte
    /// handed to the connection, or the moment it was cut).
    pub total_ms: f64,
}

/// A line whose response body is still on its way (hyper's path): what it will say, and the
/// body bytes counted so far. It is written when the body ends or is dropped.
#[derive(Debug)]
pub struct Pending {
    pub ts: f64,
    pub listener: String,
    pub route: String,
    pub client: String,
    pub method: String,
    pub host: Option<String>,
    pub path: String,
    pub status: u16,
    pub upstream: Option<String>,
    pub duration_ms: f64,
    /// When the request arrived.
    pub started: std::time::Instant,
    pub bytes: u64,
}

impl Pending {
    /// Writes the line, the response having ended now.
    pub fn write(&self) {
        record(&Entry {
            ts: self.ts,
            listener: &self.listener,
            route: Some(&self.route),
            client: &self.client,
            method: Some(&self.method),
            host: self.host.as_deref(),
            path: Some(&self.path),
            status: self.status,
            bytes: self.bytes,
            upstream: self.upstream.clone(),
            duration_ms: self.duration_ms,
            total_ms: self.started.elapsed().as_secs_f64() * 1e3,
        });
    }
}

/// Appends `e` to this worker's buffer; hands the buffer over when it is full.
pub fn record(e: &Entry<'_>) {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if serde_json::to_writer(&mut *b, e).is_ok() {
            b.push(b'\n');
        }
        if b.len() >= BATCH {
            hand_over(&mut b);
        }
    });
}

/// Hands what this worker has gathered to the writer (the worker's periodic flush).
pub fn flush() {
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if !b.is_empty() {
            hand_over(&mut b);
        }
    });
}

fn hand_over(b: &mut Vec<u8>) {
    let batch = std::mem::replace(b, Vec::with_capacity(BATCH + 1024));
    if let Some(tx) = SINK.get() {
        if let Err(TrySendError::Full(_)) = tx.try_send(batch) {
            if DROPPED.fetch_add(1, Relaxed) == 0 {
                tracing::warn!("access log writer is behind; dropping batches of lines");
            }
        }
    }
}
