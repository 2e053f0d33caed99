//! Metrics: per-worker counters written without locks or shared atomics, worker-owned
//! connect-time histograms, and the Prometheus text exposition that sums them on scrape.
//!
//! Workers write; the admin server (control plane) reads and renders. Nothing here is on the
//! data path beyond `Counter::add` and `WorkerHistograms::record`.

pub mod counters;
pub mod exposition;
pub mod histogram;
pub mod stats;
