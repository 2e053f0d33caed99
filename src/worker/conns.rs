//! Counting a worker's open connections, so shutdown can wait for them to finish, and telling
//! the connections that can end early (Redis and Memcached clients, which stay connected for
//! ever) that the worker is draining.
//!
//! Worker-local (`Rc`, `Cell`): each connection task holds a [`ConnToken`]; dropping the last
//! one wakes whoever waits in [`ConnTracker::wait_idle`].

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

/// Something a draining worker can wake (a client connection's reply queue).
pub trait Wake {
    fn wake(&self);
}

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

/// The worker's "stop when you can" signal, for connections that would otherwise stay open.
#[derive(Default)]
pub struct Drain {
    started: Cell<bool>,
    subscribers: RefCell<Vec<Weak<dyn Wake>>>,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("started", &self.started.get())
            .field("subscribers", &self.subscribers.borrow().len())
            .finish()
    }
}

impl Drain {
    /// Has `w` woken when the worker starts draining; the woken task checks [`Drain::started`].
    pub fn subscribe(&self, w: Weak<dyn Wake>) {
        let mut subs = self.subscribers.borrow_mut();
        // Forget closed connections now and then; amortised O(1) per subscription.
        if subs.len() >= 64 && subs.len().is_power_of_two() {
            subs.retain(|w| w.strong_count() > 0);
        }
        subs.push(w);
    }

    pub fn started(&self) -> bool {
        self.started.get()
    }

    pub fn start(&self) {
        self.started.set(true);
        for w in self.subscribers.take() {
            if let Some(n) = w.upgrade() {
                n.wake();
            }
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
