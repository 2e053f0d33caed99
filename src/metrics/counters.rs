//! Per-worker counters that cost the data path no lock and no contended atomic.
//!
//! Every counter lives in a [`PerWorker`] slot: worker `i` is the only thread that ever writes
//! slot `i`, and each slot sits on its own cache line pair, so writes never bounce a line
//! between cores. A write is a relaxed load and store (two plain `mov`s on x86, no `lock`
//! prefix); readers on the admin thread load the slots and sum them. A reader may see a value a
//! few nanoseconds old, never a torn one.
//!
//! What this does not do: it does not let two threads write one slot (their updates could be
//! lost; that is a bug in the caller, not memory unsafety), and it does not hold histograms
//! (those are worker-owned, see [`super::histogram`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter or gauge written by one thread only.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// For gauges: undo an earlier `inc` by the same worker.
    #[inline]
    pub fn dec(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(1), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Decrements a gauge when dropped; keeps `active` counts right on every exit path.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a Counter);

impl<'a> GaugeGuard<'a> {
    pub fn new(gauge: &'a Counter) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A gauge raised for as long as this is held, like [`GaugeGuard`] but owning its counters, so
/// a connection can keep it across tasks (while parked, `worker::park`).
pub struct OwnedGauge<S> {
    stats: Arc<S>,
    worker: usize,
    field: fn(&S, usize) -> &Counter,
}

impl<S> OwnedGauge<S> {
    pub fn new(stats: Arc<S>, worker: usize, field: fn(&S, usize) -> &Counter) -> Self {
        field(&stats, worker).inc();
        OwnedGauge {
            stats,
            worker,
            field,
        }
    }
}

impl<S> std::fmt::Debug for OwnedGauge<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedGauge")
            .field("worker", &self.worker)
            .finish()
    }
}

impl<S> Drop for OwnedGauge<S> {
    fn drop(&mut self) {
        (self.field)(&self.stats, self.worker).dec();
    }
}

/// Two cache lines: adjacent-line prefetch on x86 pairs lines, so 128 bytes keeps neighbours
/// from false sharing.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per worker, each on its own cache lines.
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[Padded<T>]>,
}

impl<T: Default> PerWorker<T> {
    pub fn new(workers: usize) -> Self {
        PerWorker {
            slots: (0..workers.max(1)).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> PerWorker<T> {
    /// The slot of `worker`. Worker ids are always below the count the table was built for;
    /// an out-of-range id (a bug) folds onto an existing slot rather than panicking.
    #[inline]
    pub fn get(&self, worker: usize) -> &T {
        &self.slots[worker % self.slots.len()].0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }

    /// Sums one field over all workers.
    pub fn sum(&self, field: impl Fn(&T) -> &Counter) -> u64 {
        self.iter()
            .map(|t| field(t).get())
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct C {
        a: Counter,
    }

    #[test]
    fn slots_are_separate_and_summed() {
        let p: PerWorker<C> = PerWorker::new(3);
        p.get(0).a.add(5);
        p.get(2).a.inc();
        {
            let _g = GaugeGuard::new(&p.get(1).a);
            assert_eq!(p.sum(|c| &c.a), 7);
        }
        assert_eq!(p.sum(|c| &c.a), 6);
        assert_eq!(std::mem::align_of::<Padded<C>>(), 128);
    }
}
