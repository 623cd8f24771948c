//! Coalesces concurrent calls into one script call: callers send an item and
//! wait on a oneshot reply; a background task drains whatever is queued (up
//! to a limit) and runs one call for all of it, a few calls in flight at once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::error::{QueueError, Result};

type Reply<O> = oneshot::Sender<Result<O>>;

/// An item, where its reply goes, and the caller's span (`Span::none()` without tracing).
type Queued<I, O> = (I, Reply<O>, tracing::Span);

/// Handle to a batching task; dropping every handle stops the task.
pub(crate) struct Batcher<I, O> {
    tx: mpsc::UnboundedSender<Queued<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher { tx: self.tx.clone() }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the batching task on the current tokio runtime. `exec` must
    /// return exactly one output per input, in order.
    pub(crate) fn spawn<F, Fut>(max_batch: usize, inflight: usize, exec: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued<I, O>>();
        let max_batch = max_batch.max(1);
        let permits = Arc::new(Semaphore::new(inflight.max(1)));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Waiting for a free slot before draining lets the batch grow
                // while earlier calls are still running.
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let mut items = Vec::with_capacity(max_batch.min(64));
                let mut replies = Vec::with_capacity(max_batch.min(64));
                // The call is traced as part of the first caller's work (its span the parent of
                // the script's); the others' spans cover their wait for it.
                let (i, r, span) = first;
                items.push(i);
                replies.push(r);
                while items.len() < max_batch {
                    match rx.try_recv() {
                        Ok((i, r, _)) => {
                            items.push(i);
                            replies.push(r);
                        }
                        Err(_) => break,
                    }
                }
                let n = items.len();
                let fut = tracing::Instrument::instrument(exec(items), span);
                tokio::spawn(async move {
                    let result = fut.await;
                    drop(permit);
                    match result {
                        Ok(outs) if outs.len() == n => {
                            for (reply, out) in replies.into_iter().zip(outs) {
                                let _ = reply.send(Ok(out));
                            }
                        }
                        Ok(outs) => {
                            let e = QueueError::protocol("batch", format!("{} replies for {n} items", outs.len()));
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                });
            }
        });
        Batcher { tx }
    }

    pub(crate) async fn submit(&self, item: I) -> Result<O> {
        let (tx, rx) = oneshot::channel();
        let span = if crate::telemetry::enabled() { tracing::Span::current() } else { tracing::Span::none() };
        self.tx.send((item, tx, span)).map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }
}
