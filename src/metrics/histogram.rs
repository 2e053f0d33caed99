//! Connect-time histograms: hdrhistogram, owned by the worker that records into them.
//!
//! A histogram cannot be updated from two threads without a lock, so each worker keeps its own
//! (keyed by the endpoint's `uid`) and never shares them. On a scrape the admin server asks
//! every worker for a copy (a message on the worker's command channel, as Envoy merges its
//! per-thread histograms) and merges the copies. Recording is a hash lookup and an array
//! increment on the worker's own memory, once per upstream connect.
//!
//! Histograms auto-resize, so an endpoint whose connects take 50 µs costs a few hundred bytes
//! per worker, not the full 1 µs..60 s range.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Upper bounds (seconds) of the Prometheus buckets exported for connect times.
pub const BUCKETS_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One worker's histograms; lives in the worker and is never sent whole across threads.
#[derive(Debug, Default)]
pub struct WorkerHistograms {
    by_uid: RefCell<HashMap<u64, Histogram<u64>>>,
}

impl WorkerHistograms {
    /// Records one connect time, in microseconds, for endpoint `uid`.
    pub fn record(&self, uid: u64, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut map = self.by_uid.borrow_mut();
        let h = match map.entry(uid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match Histogram::new(2) {
                Ok(h) => v.insert(h),
                Err(_) => return,
            },
        };
        // `record` grows an auto-resizing histogram; `saturating_record` would clamp instead.
        if h.record(micros).is_err() {
            h.saturating_record(micros);
        }
    }

    /// Copies the histograms of endpoints in `live`, and forgets the others (endpoints that
    /// left the routing table).
    pub fn snapshot(&self, live: &HashSet<u64>) -> Vec<(u64, Histogram<u64>)> {
        let mut map = self.by_uid.borrow_mut();
        map.retain(|uid, _| live.contains(uid));
        map.iter().map(|(uid, h)| (*uid, h.clone())).collect()
    }
}

/// Histograms from all workers, merged per endpoint.
#[derive(Debug, Default)]
pub struct Merged {
    by_uid: HashMap<u64, Histogram<u64>>,
}

impl Merged {
    pub fn add(&mut self, from: Vec<(u64, Histogram<u64>)>) {
        for (uid, h) in from {
            match self.by_uid.entry(uid) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    // Both auto-resize, so adding cannot run out of range.
                    let _ = e.get_mut().add(&h);
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(h);
                }
            }
        }
    }

    pub fn get(&self, uid: u64) -> Option<&Histogram<u64>> {
        self.by_uid.get(&uid)
    }
}

/// A histogram in Prometheus terms: sum (seconds), count, and per-bucket (not cumulative)
/// counts for [`BUCKETS_SECONDS`] plus +Inf.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl Exported {
    pub fn empty() -> Self {
        Exported {
            sum: 0.0,
            count: 0,
            buckets: BUCKETS_SECONDS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .map(|b| (b, 0))
                .collect(),
        }
    }

    /// Adds every recorded value of `h` (microseconds) to the buckets.
    pub fn add(&mut self, h: &Histogram<u64>) {
        for v in h.iter_recorded() {
            let secs = v.value_iterated_to() as f64 / 1e6;
            let n = v.count_at_value();
            let i = BUCKETS_SECONDS
                .iter()
                .position(|b| secs <= *b)
                .unwrap_or(BUCKETS_SECONDS.len());
            self.buckets[i].1 += n;
            self.count += n;
            self.sum += secs * n as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_copies_merge_into_buckets() {
        let a = WorkerHistograms::default();
        let b = WorkerHistograms::default();
        a.record(7, Duration::from_micros(80));
        a.record(7, Duration::from_millis(3));
        b.record(7, Duration::from_secs(20));
        b.record(9, Duration::from_micros(80));
        let live: HashSet<u64> = [7].into();
        let mut m = Merged::default();
        m.add(a.snapshot(&live));
        m.add(b.snapshot(&live));
        assert!(m.get(9).is_none(), "endpoint 9 left the table");
        let mut e = Exported::empty();
        e.add(m.get(7).unwrap());
        assert_eq!(e.count, 3);
        assert_eq!(e.buckets[0], (0.0001, 1));
        assert_eq!(e.buckets[5], (0.005, 1));
        assert_eq!(e.buckets[16], (f64::INFINITY, 1));
        assert!((e.sum - 20.003).abs() < 0.5, "{}", e.sum);
        // The worker forgot the endpoint that left.
        assert!(b.snapshot(&[9].into()).is_empty());
    }
}
