//! A channel bounded in bytes, not messages: what a run has produced and its client has not
//! yet taken waits here, and a producer that would go over the budget waits (backpressure to
//! the plan, or to the run child through its pipe). Never drops or reorders a message.
//!
//! A message heavier than the whole budget still goes through, alone (it waits until the
//! channel is empty): producers keep messages small (result chunks of `result_chunk_bytes`),
//! so the budget is what bounds memory, not the largest message.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What a message weighs, in bytes (an estimate of what it holds in memory).
pub(crate) trait Weigh {
    /// Bytes.
    fn weight(&self) -> usize;
}

/// The receiver is gone: the message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiving side is gone")]
pub(crate) struct Closed;

/// The sending side; clones share the budget.
#[derive(Debug)]
pub(crate) struct Sender<T> {
    tx: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    bytes: Arc<Semaphore>,
    budget: u32,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            bytes: self.bytes.clone(),
            budget: self.budget,
        }
    }
}

/// The receiving side. Dropping it drops what waits in it and fails every waiting send.
#[derive(Debug)]
pub(crate) struct Receiver<T> {
    rx: mpsc::UnboundedReceiver<(T, OwnedSemaphorePermit)>,
    bytes: Arc<Semaphore>,
}

/// A channel that holds at most `budget` bytes of messages (at least 1).
pub(crate) fn channel<T: Weigh>(budget: usize) -> (Sender<T>, Receiver<T>) {
    let budget = u32::try_from(budget.max(1)).unwrap_or(u32::MAX);
    let bytes = Arc::new(Semaphore::new(budget as usize));
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Sender {
            tx,
            bytes: bytes.clone(),
            budget,
        },
        Receiver { rx, bytes },
    )
}

impl<T: Weigh> Sender<T> {
    /// Sends `item` once the budget has room for it; fails when the receiver is gone.
    pub(crate) async fn send(&self, item: T) -> Result<(), Closed> {
        let weight = u32::try_from(item.weight())
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget);
        let permit = self
            .bytes
            .clone()
            .acquire_many_owned(weight)
            .await
            .map_err(|_| Closed)?;
        self.tx.send((item, permit)).map_err(|_| Closed)
    }

    /// Resolves when the receiver is gone.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and nothing waits. The message's
    /// bytes leave the budget as it is handed out.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(item, _permit)| item)
    }

    /// [`recv`](Self::recv) for a `Stream`.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_recv(cx).map(|m| m.map(|(item, _permit)| item))
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Wakes senders waiting for room: they fail instead of waiting forever.
        self.bytes.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    impl Weigh for Vec<u8> {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    #[tokio::test]
    async fn a_sender_waits_for_room_in_bytes_and_fails_when_the_receiver_goes() {
        let (tx, mut rx) = channel::<Vec<u8>>(100);
        tx.send(vec![0; 60]).await.expect("fits");
        tx.send(vec![1; 40]).await.expect("fits exactly");
        // Full: one more byte waits.
        let blocked = tokio::time::timeout(Duration::from_millis(100), tx.send(vec![2; 1])).await;
        assert!(blocked.is_err(), "over the budget, a send waits");
        // Taking the first message makes room for 60 bytes: now it goes.
        assert_eq!(rx.recv().await.map(|v| v.len()), Some(60));
        tx.send(vec![2; 50]).await.expect("room again");
        // Heavier than the whole budget: waits until the channel is empty, then goes alone.
        let heavy = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(vec![3; 1000]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!heavy.is_finished());
        assert_eq!(rx.recv().await.map(|v| v[0]), Some(1));
        assert_eq!(rx.recv().await.map(|v| v[0]), Some(2));
        heavy.await.expect("task").expect("sent alone");
        assert_eq!(rx.recv().await.map(|v| v.len()), Some(1000));
        // The receiver goes: a waiting sender fails instead of waiting forever.
        tx.send(vec![4; 100]).await.expect("fits");
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(vec![5; 10]).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(rx);
        assert_eq!(waiting.await.expect("task"), Err(Closed));
        assert_eq!(tx.send(vec![6; 1]).await, Err(Closed));
    }
}
