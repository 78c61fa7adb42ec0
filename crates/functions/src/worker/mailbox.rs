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
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;

use crate::isolate::lock;

/// One invocation's events, from the pool to the invocation's future: a
/// channel for a receiver that takes one event in its life, or a few. (A
/// tokio channel allocates a block of 32 slots and cost the node more than
/// the rest of an invocation's dispatch: 1,600 instructions.) The sending
/// side is cloned like a channel's; [`InboxRx::recv`] gives `None` once
/// every sender is gone and nothing is left.
pub(super) struct Inbox<E> {
    shared: Arc<InboxShared<E>>,
}

/// The receiving side of an [`Inbox`].
pub(super) struct InboxRx<E> {
    shared: Arc<InboxShared<E>>,
}

struct InboxShared<E> {
    state: Mutex<InboxState<E>>,
    senders: AtomicUsize,
}

struct InboxState<E> {
    /// The oldest event (most invocations get just one: no allocation) ...
    first: Option<E>,
    /// ... and those after it.
    more: VecDeque<E>,
    waker: Option<Waker>,
    /// The receiver is gone: sends fail.
    closed: bool,
}

pub(super) fn inbox<E>() -> (Inbox<E>, InboxRx<E>) {
    let shared = Arc::new(InboxShared {
        state: Mutex::new(InboxState {
            first: None,
            more: VecDeque::new(),
            waker: None,
            closed: false,
        }),
        senders: AtomicUsize::new(1),
    });
    (
        Inbox {
            shared: Arc::clone(&shared),
        },
        InboxRx { shared },
    )
}

impl<E> Inbox<E> {
    /// Hands `event` to the receiver; gives it back if the receiver is gone.
    pub(super) fn send(&self, event: E) -> Result<(), E> {
        let waker = {
            let mut st = lock(&self.shared.state);
            if st.closed {
                return Err(event);
            }
            if st.first.is_none() && st.more.is_empty() {
                st.first = Some(event);
            } else {
                st.more.push_back(event);
            }
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<E> Clone for Inbox<E> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Inbox {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E> Drop for Inbox<E> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The receiver checks the count under the lock before it
            // waits: its waker is registered by the time this takes it.
            let waker = lock(&self.shared.state).waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<E> InboxRx<E> {
    /// The next event; `None` when every sender is gone and none is left.
    pub(super) async fn recv(&mut self) -> Option<E> {
        poll_fn(|cx| {
            let mut st = lock(&self.shared.state);
            if let Some(e) = st.first.take() {
                return Poll::Ready(Some(e));
            }
            if let Some(e) = st.more.pop_front() {
                return Poll::Ready(Some(e));
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(None);
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl<E> Drop for InboxRx<E> {
    fn drop(&mut self) {
        let left = {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            st.waker = None;
            (st.first.take(), std::mem::take(&mut st.more))
        };
        // Dropped outside the lock.
        drop(left);
    }
}

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
    pub tx: Inbox<E>,
    pub event: E,
    pub undelivered: Option<Box<dyn FnOnce(E) + Send>>,
}

impl<E> Delivery<E> {
    fn deliver(self) {
        if let Err(e) = self.tx.send(self.event) {
            if let Some(f) = self.undelivered {
                f(e);
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
        // Inside a task (the usual caller), the mailbox made earlier serves
        // without a clone of the runtime's handle.
        if tokio::task::try_id().is_some() {
            let made = slot.with(|cell| {
                let cell = cell.borrow();
                cell.as_ref().filter(|mb| !mb.is_closed()).cloned()
            });
            if made.is_some() {
                return made;
            }
        }
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
        // (A #[tokio::test] runs on one thread: a task sees the same.)
        let in_task = tokio::spawn(async { Mailbox::current(&SLOT) })
            .await
            .expect("the task")
            .expect("inside a runtime");
        assert!(Arc::ptr_eq(&mb, &in_task), "one mailbox per thread");
        let (tx, mut rx) = inbox();
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
    async fn an_inbox_keeps_the_order_and_ends_with_its_senders() {
        let (tx, mut rx) = inbox::<u32>();
        let tx2 = tx.clone();
        assert_eq!(tx.send(1), Ok(()));
        assert_eq!(tx2.send(2), Ok(()));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.send(3), Ok(()));
        assert_eq!(tx2.send(4), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        drop(tx);
        // One sender left, nothing queued: waits for it. Its events come
        // first, then its drop (on another thread) ends the wait.
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            assert_eq!(tx2.send(5), Ok(()));
            drop(tx2);
        });
        assert_eq!(rx.recv().await, Some(4));
        assert_eq!(rx.recv().await, Some(5));
        assert_eq!(rx.recv().await, None);
        sender.join().expect("sender");
    }

    #[tokio::test]
    async fn a_waiting_inbox_wakes_when_its_last_sender_goes() {
        let (tx, mut rx) = inbox::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(tx);
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got, Ok(None));
        t.join().expect("thread");
    }

    #[test]
    fn sending_to_a_dropped_inbox_gives_the_event_back() {
        let (tx, rx) = inbox::<String>();
        assert_eq!(tx.send("queued".into()), Ok(()));
        drop(rx);
        assert_eq!(tx.send("late".into()), Err("late".to_string()));
    }

    #[tokio::test]
    async fn reports_what_nobody_takes() {
        let mb = Mailbox::current(&SLOT).expect("inside a runtime");
        let (tx, rx) = inbox::<u32>();
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
        let (tx, mut rx) = inbox();
        mb.put(Delivery {
            tx,
            event: 1,
            undelivered: None,
        });
        assert_eq!(
            futures_util::FutureExt::now_or_never(rx.recv()),
            Some(Some(1))
        );
        let second = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // Inside a task, first: the closed one is not taken for it.
        let in_task = second
            .block_on(async { tokio::spawn(async { Mailbox::current(&SLOT) }).await })
            .expect("the task")
            .expect("inside a runtime");
        let mb2 = second
            .block_on(async { Mailbox::current(&SLOT) })
            .expect("inside a runtime");
        assert!(!Arc::ptr_eq(&mb, &mb2));
        assert!(Arc::ptr_eq(&in_task, &mb2), "one mailbox per thread");
        assert!(!mb2.is_closed());
        // Outside any runtime: none.
        drop(second);
        assert!(Mailbox::current(&SLOT).is_none());
    }
}
