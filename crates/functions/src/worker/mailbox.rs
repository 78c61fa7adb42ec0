//! Delivering a worker's answers to the invocations waiting for them.
//!
//! A worker's frames are read by a thread of the pool, and the invocations
//! that wait for them are tasks on the node's runtimes. Waking a task of a
//! runtime from a foreign thread makes the runtime's driver write to its
//! eventfd: a system call and a wake-up per frame, although a read often
//! brings tens of frames. So each runtime thread that invokes functions has
//! a mailbox and one task that empties it: the reader puts a read's frames
//! into the mailboxes and wakes each mailbox once, and the task hands the
//! events on with wake-ups local to its runtime.

use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;

use crate::isolate::lock;

/// Events for the invocations of one runtime thread, and the task that
/// hands them on.
pub(super) struct Mailbox<E> {
    queue: Mutex<Vec<Delivery<E>>>,
    waker: AtomicWaker,
    /// The task is gone (its runtime shut down): deliver directly.
    closed: AtomicBool,
}

/// One event for one invocation, with what to do if nobody takes it.
pub(super) struct Delivery<E> {
    pub tx: mpsc::UnboundedSender<E>,
    pub event: E,
    pub undelivered: Option<Box<dyn FnOnce(E) + Send>>,
}

impl<E> Delivery<E> {
    fn deliver(self) {
        if let Err(e) = self.tx.send(self.event) {
            if let Some(f) = self.undelivered {
                f(e.0);
            }
        }
    }
}

/// Marks the mailbox closed when its task is dropped.
struct CloseOnDrop<E>(Arc<Mailbox<E>>);

impl<E> Drop for CloseOnDrop<E> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        // What is left has nobody to hand it on: deliver it here (the
        // receivers are most likely gone with the runtime too).
        self.0.deliver_left();
    }
}

impl<E> Mailbox<E> {
    /// Delivers what is queued, here and now.
    fn deliver_left(&self) {
        let left = std::mem::take(&mut *lock(&self.queue));
        for d in left {
            d.deliver();
        }
    }
}

impl<E: Send + 'static> Mailbox<E> {
    /// This runtime thread's mailbox (made, with its task, on first use);
    /// `None` outside a tokio runtime.
    pub(super) fn current(
        slot: &'static std::thread::LocalKey<RefCell<Option<Arc<Mailbox<E>>>>>,
    ) -> Option<Arc<Mailbox<E>>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        slot.with(|cell| {
            let mut cell = cell.borrow_mut();
            if let Some(mb) = cell.as_ref().filter(|mb| !mb.is_closed()) {
                return Some(Arc::clone(mb));
            }
            let mb = Arc::new(Mailbox {
                queue: Mutex::new(Vec::new()),
                waker: AtomicWaker::new(),
                closed: AtomicBool::new(false),
            });
            let guard = CloseOnDrop(Arc::clone(&mb));
            handle.spawn(async move {
                let guard = guard;
                let mut batch = Vec::new();
                poll_fn(|cx| {
                    // Registered before the queue is taken, so a delivery
                    // put in after the take wakes the task again.
                    guard.0.waker.register(cx.waker());
                    std::mem::swap(&mut *lock(&guard.0.queue), &mut batch);
                    for d in batch.drain(..) {
                        d.deliver();
                    }
                    Poll::<()>::Pending
                })
                .await;
            });
            *cell = Some(Arc::clone(&mb));
            Some(mb)
        })
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues `d` (handed on after the next [`Mailbox::wake`]), or delivers
    /// it now if the mailbox's task is gone.
    pub(super) fn put(&self, d: Delivery<E>) {
        if self.is_closed() {
            return d.deliver();
        }
        lock(&self.queue).push(d);
        // Closed between the check and the push: nobody will take it.
        if self.is_closed() {
            self.deliver_left();
        }
    }

    /// Has the task hand on what was put in.
    pub(super) fn wake(&self) {
        self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static SLOT: RefCell<Option<Arc<Mailbox<u32>>>> = const { RefCell::new(None) };
    }

    #[tokio::test]
    async fn hands_events_on_after_a_wake() {
        let mb = Mailbox::current(&SLOT).expect("inside a runtime");
        let again = Mailbox::current(&SLOT).expect("inside a runtime");
        assert!(Arc::ptr_eq(&mb, &again), "one mailbox per thread");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mb2 = Arc::clone(&mb);
        std::thread::spawn(move || {
            for i in 0..10 {
                mb2.put(Delivery {
                    tx: tx.clone(),
                    event: i,
                    undelivered: None,
                });
            }
            mb2.wake();
        })
        .join()
        .expect("thread");
        for i in 0..10 {
            assert_eq!(rx.recv().await, Some(i));
        }
    }

    #[tokio::test]
    async fn reports_what_nobody_takes() {
        let mb = Mailbox::current(&SLOT).expect("inside a runtime");
        let (tx, rx) = mpsc::unbounded_channel::<u32>();
        drop(rx);
        let (back_tx, back_rx) = std::sync::mpsc::channel();
        mb.put(Delivery {
            tx,
            event: 7,
            undelivered: Some(Box::new(move |e| {
                let _ = back_tx.send(e);
            })),
        });
        mb.wake();
        tokio::task::yield_now().await;
        assert_eq!(
            back_rx.recv_timeout(std::time::Duration::from_secs(5)),
            Ok(7)
        );
    }

    #[test]
    fn a_new_runtime_gets_a_new_mailbox() {
        let first = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mb = first
            .block_on(async { Mailbox::current(&SLOT) })
            .expect("inside a runtime");
        drop(first);
        assert!(mb.is_closed(), "its task went with its runtime");
        // Deliveries to a closed mailbox go straight through.
        let (tx, mut rx) = mpsc::unbounded_channel();
        mb.put(Delivery {
            tx,
            event: 1,
            undelivered: None,
        });
        assert_eq!(rx.try_recv(), Ok(1));
        let second = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mb2 = second
            .block_on(async { Mailbox::current(&SLOT) })
            .expect("inside a runtime");
        assert!(!Arc::ptr_eq(&mb, &mb2));
        assert!(!mb2.is_closed());
    }
}
