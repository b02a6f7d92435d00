//! Gathering many concurrent requests into one piece of work (one statement, one commit):
//! a request waits at most `window` for others to join, and keeps gathering while every
//! flush slot is busy, so under load groups grow by themselves and a lone request pays no
//! more than the window. Each request gets its own answer from the flush.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// How a [`Gatherer`] groups its requests.
#[derive(Clone, Copy, Debug)]
pub struct GatherSettings {
    /// How long the first request of a group waits for others (zero: only those already
    /// waiting join, plus those that arrive while every slot is busy).
    pub window: Duration,
    /// Most requests in one group.
    pub max_group: usize,
    /// Groups flushed at once.
    pub slots: usize,
    /// Requests waiting to be gathered; beyond it callers wait to hand theirs over.
    pub queue: usize,
}

struct Request<T, R> {
    item: T,
    answer: oneshot::Sender<R>,
}

/// Hands items to a background task that flushes them in groups. Cheap to clone; the task
/// ends when the last clone is dropped and the groups in flight are flushed.
pub struct Gatherer<T, R> {
    requests: mpsc::Sender<Request<T, R>>,
}

impl<T, R> Clone for Gatherer<T, R> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Gatherer<T, R> {
    /// Starts the gathering task. `flush` answers a group in its order, one answer per item.
    pub fn start<F, Fut>(settings: GatherSettings, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (requests, received) = mpsc::channel(settings.queue.max(1));
        tokio::spawn(gather(received, settings, Arc::new(flush)));
        Self { requests }
    }

    /// The item's answer from its group's flush; `None` when the gatherer stopped or the
    /// flush gave no answer for it.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (answer, answered) = oneshot::channel();
        self.requests.send(Request { item, answer }).await.ok()?;
        answered.await.ok()
    }
}

async fn gather<T, R, F, Fut>(
    mut received: mpsc::Receiver<Request<T, R>>,
    settings: GatherSettings,
    flush: Arc<F>,
) where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<R>> + Send + 'static,
{
    let max_group = settings.max_group.max(1);
    let slots = Arc::new(Semaphore::new(settings.slots.max(1)));
    while let Some(first) = received.recv().await {
        let mut group = vec![first];
        let window = tokio::time::sleep(settings.window);
        tokio::pin!(window);
        let (mut window_over, mut closed) = (settings.window.is_zero(), false);
        let permit = loop {
            // Whatever already waits joins without a turn of the scheduler.
            while !closed && group.len() < max_group {
                match received.try_recv() {
                    Ok(request) => group.push(request),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned(), if window_over || closed || group.len() >= max_group => {
                    match permit {
                        Ok(permit) => break permit,
                        Err(_) => return,
                    }
                }
                _ = &mut window, if !window_over => window_over = true,
                request = received.recv(), if !closed && group.len() < max_group => match request {
                    Some(request) => group.push(request),
                    None => closed = true,
                },
            }
        };
        let flush = flush.clone();
        tokio::spawn(async move {
            let (items, answers): (Vec<T>, Vec<oneshot::Sender<R>>) =
                group.into_iter().map(|r| (r.item, r.answer)).unzip();
            let results = flush(items).await;
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(result);
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(window: Duration) -> GatherSettings {
        GatherSettings {
            window,
            max_group: 8,
            slots: 1,
            queue: 64,
        }
    }

    #[tokio::test]
    async fn each_request_gets_its_own_answer_and_concurrent_ones_share_a_flush() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = groups.clone();
        let gatherer = Gatherer::start(
            settings(Duration::from_millis(20)),
            move |items: Vec<u32>| {
                seen.lock().unwrap().push(items.len());
                async move { items.into_iter().map(|i| i * 10).collect::<Vec<_>>() }
            },
        );
        let answers = futures::future::join_all((0..5).map(|i| {
            let g = gatherer.clone();
            async move { g.submit(i).await }
        }))
        .await;
        assert_eq!(
            answers,
            vec![Some(0), Some(10), Some(20), Some(30), Some(40)]
        );
        assert_eq!(*groups.lock().unwrap(), vec![5]);
    }

    #[tokio::test]
    async fn a_group_never_exceeds_its_maximum() {
        let groups = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = groups.clone();
        let gatherer = Gatherer::start(
            settings(Duration::from_millis(20)),
            move |items: Vec<u32>| {
                seen.lock().unwrap().push(items.len());
                async move { items }
            },
        );
        let answers = futures::future::join_all((0..20).map(|i| {
            let g = gatherer.clone();
            async move { g.submit(i).await }
        }))
        .await;
        assert_eq!(answers, (0..20).map(Some).collect::<Vec<_>>());
        let groups = groups.lock().unwrap();
        assert!(groups.iter().all(|&n| n <= 8), "{groups:?}");
        assert_eq!(groups.iter().sum::<usize>(), 20);
    }

    #[tokio::test]
    async fn a_flush_that_gives_no_answer_for_an_item_answers_none() {
        let gatherer = Gatherer::start(settings(Duration::ZERO), |_items: Vec<u32>| async {
            Vec::<u32>::new()
        });
        assert_eq!(gatherer.submit(1).await, None);
    }
}
