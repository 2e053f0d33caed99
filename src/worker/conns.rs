//! Counting a worker's open connections, so shutdown can wait for them to finish.
//!
//! Worker-local (`Rc`, `Cell`): each connection task holds a [`ConnToken`]; dropping the last
//! one wakes whoever waits in [`ConnTracker::wait_idle`].

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct ConnTracker {
    open: Cell<usize>,
    idle: Notify,
}

impl ConnTracker {
    pub fn token(self: &Rc<Self>) -> ConnToken {
        self.open.set(self.open.get() + 1);
        ConnToken(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Completes when no connection is open.
    pub async fn wait_idle(&self) {
        while self.open.get() > 0 {
            self.idle.notified().await;
        }
    }
}

/// Held by a connection for its whole life.
#[derive(Debug)]
pub struct ConnToken(Rc<ConnTracker>);

impl Drop for ConnToken {
    fn drop(&mut self) {
        let n = self.0.open.get().saturating_sub(1);
        self.0.open.set(n);
        if n == 0 {
            self.0.idle.notify_waiters();
        }
    }
}
