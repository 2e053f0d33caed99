//! A worker's coarse clock: the time at the start of the current batch of work, read without a
//! syscall-like `clock_gettime` per request.
//!
//! Engines call [`tick`] once per batch of requests they route (one read's worth) and code on
//! the per-request path calls [`now`]. Good for deadlines measured in milliseconds; not a
//! timestamp source.

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Reads the clock and remembers it for [`now`].
pub fn tick() -> Instant {
    let t = Instant::now();
    NOW.with(|n| n.set(Some(t)));
    t
}

/// The time of this thread's last [`tick`] (the current time if there was none).
pub fn now() -> Instant {
    NOW.with(|n| n.get()).unwrap_or_else(tick)
}
