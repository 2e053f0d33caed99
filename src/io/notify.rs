//! A wake-up flag for tasks of one worker thread: `notify` sets it and wakes the waiting task,
//! `notified().await` returns once it is set and clears it. Several notifies before the task
//! runs coalesce into one wake-up, which is what batches pipelined work.
//!
//! `tokio::sync::Notify` does the same across threads with a lock; worker-local tasks need
//! only a `Cell`. Not `Send`, by design.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct LocalNotify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }

    /// Drops the waiting task's waker, for a waiter that is going away without being
    /// notified: a kept waker would keep that task's memory alive.
    pub fn forget(&self) {
        self.waker.borrow_mut().take();
    }
}

#[derive(Debug)]
pub struct Notified<'a>(&'a LocalNotify);

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.replace(false) {
            return Poll::Ready(());
        }
        let mut slot = self.0.waker.borrow_mut();
        match &*slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn notifies_coalesce_and_clear() {
        let n = std::rc::Rc::new(LocalNotify::default());
        n.notify();
        n.notify();
        n.notified().await;
        let n2 = n.clone();
        let waiter = tokio::task::LocalSet::new();
        waiter
            .run_until(async move {
                let t = tokio::task::spawn_local(async move { n2.notified().await });
                tokio::task::yield_now().await;
                assert!(!t.is_finished());
                n.notify();
                t.await.unwrap();
            })
            .await;
    }
}
