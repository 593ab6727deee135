//! The ordered worker pipeline under base compression ([`super::base`]) and
//! compose ([`super::compose`]): jobs numbered 0, 1, 2 … go to a few worker
//! threads, and their results come back in job order, with at most a fixed
//! number of jobs in flight, so memory stays bounded whatever the image size.
//!
//! "In flight" counts a job from the moment it is sent until its result is
//! taken with [`Ordered::next`]; the sender waits for room. A worker that
//! panics is reported as [`Stopped::Panicked`] instead of leaving the consumer
//! waiting forever, and dropping the pipeline stops and joins every thread.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How many jobs of `job_bytes` each `threads` workers keep in flight: two per
/// worker, no more than `budget` bytes, and never fewer than two.
pub(crate) fn in_flight(threads: usize, job_bytes: usize, budget: usize) -> usize {
    (2 * threads).min((budget / job_bytes.max(1)).max(2))
}

/// Why a pipeline ended before the result asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// A worker or the producer thread panicked.
    Panicked,
    /// The threads ended with the next job's result missing (the producer
    /// stopped early, or the pipeline was already stopped).
    Lost,
}

enum Message<R> {
    Done(usize, R),
    Panicked,
}

/// Sends jobs into an [`Ordered`] pipeline, numbering them in order.
pub(crate) struct Feeder<J> {
    jobs: SyncSender<(usize, J)>,
    /// One credit per job that may be in flight; [`Ordered::next`] gives them back.
    credits: Receiver<()>,
    reserved: bool,
    next: usize,
}

impl<J> Feeder<J> {
    /// Waits until one more job may be in flight, and keeps that room for the
    /// next [`send`](Self::send). `Err` once the pipeline is gone.
    pub(crate) fn wait_for_room(&mut self) -> Result<(), Stopped> {
        if !self.reserved {
            self.credits.recv().map_err(|_| Stopped::Lost)?;
            self.reserved = true;
        }
        Ok(())
    }

    /// Whether one more job may be in flight now, without waiting (the room is
    /// kept for the next [`send`](Self::send)).
    fn has_room(&mut self) -> bool {
        self.reserved = self.reserved || self.credits.try_recv().is_ok();
        self.reserved
    }

    /// Sends the next job, waiting for room first.
    pub(crate) fn send(&mut self, job: J) -> Result<(), Stopped> {
        self.wait_for_room()?;
        self.jobs
            .send((self.next, job))
            .map_err(|_| Stopped::Lost)?;
        self.reserved = false;
        self.next += 1;
        Ok(())
    }
}

/// Results of jobs done by worker threads, handed out in job order.
pub(crate) struct Ordered<J, R> {
    /// The feeder, when the caller's thread sends the jobs itself.
    feeder: Option<Feeder<J>>,
    results: Option<Receiver<Message<R>>>,
    credits: Option<SyncSender<()>>,
    pending: BTreeMap<usize, R>,
    next: usize,
    threads: Vec<JoinHandle<()>>,
}

impl<J: Send + 'static, R: Send + 'static> Ordered<J, R> {
    /// Starts `workers` threads, each with its own state from `init`, doing
    /// `work(state, index, job)`; the caller sends the jobs with
    /// [`send`](Self::send) and takes the results with [`next`](Self::next) on
    /// its own thread.
    pub(crate) fn start<S>(
        workers: usize,
        in_flight: usize,
        init: impl Fn() -> S + Send + Sync + 'static,
        work: impl Fn(&mut S, usize, J) -> R + Send + Sync + 'static,
    ) -> Self {
        Self::build(workers, in_flight, init, work, None)
    }

    /// Like [`start`](Self::start), with the jobs sent by `producer` on a thread
    /// of its own (joined when the pipeline is dropped). The producer should
    /// return once a send fails: the consumer is gone.
    pub(crate) fn start_with_producer<S>(
        workers: usize,
        in_flight: usize,
        init: impl Fn() -> S + Send + Sync + 'static,
        work: impl Fn(&mut S, usize, J) -> R + Send + Sync + 'static,
        producer: impl FnOnce(Feeder<J>) + Send + 'static,
    ) -> Self {
        Self::build(workers, in_flight, init, work, Some(Box::new(producer)))
    }

    #[allow(clippy::type_complexity)]
    fn build<S>(
        workers: usize,
        in_flight: usize,
        init: impl Fn() -> S + Send + Sync + 'static,
        work: impl Fn(&mut S, usize, J) -> R + Send + Sync + 'static,
        producer: Option<Box<dyn FnOnce(Feeder<J>) + Send>>,
    ) -> Self {
        let in_flight = in_flight.max(1);
        let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            // Cannot fail: the channel holds exactly `in_flight` and its
            // receiver is alive.
            let _ = credit_tx.try_send(());
        }
        let (job_tx, job_rx) = mpsc::sync_channel::<(usize, J)>(in_flight);
        let (result_tx, result_rx) = mpsc::channel::<Message<R>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (init, work) = (Arc::new(init), Arc::new(work));
        let mut threads = Vec::with_capacity(workers + 1);
        for _ in 0..workers.max(1) {
            let (job_rx, result_tx) = (Arc::clone(&job_rx), result_tx.clone());
            let (init, work) = (Arc::clone(&init), Arc::clone(&work));
            threads.push(std::thread::spawn(move || {
                let _guard = PanicGuard(result_tx.clone());
                let mut state = init();
                loop {
                    // Holding the lock only while receiving keeps the others busy.
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((index, job)) = job else { return };
                    let result = work(&mut state, index, job);
                    if result_tx.send(Message::Done(index, result)).is_err() {
                        return; // the consumer is gone
                    }
                }
            }));
        }
        let feeder = Feeder {
            jobs: job_tx,
            credits: credit_rx,
            reserved: false,
            next: 0,
        };
        let feeder = match producer {
            None => Some(feeder),
            Some(producer) => {
                let guard = PanicGuard(result_tx.clone());
                threads.push(std::thread::spawn(move || {
                    let _guard = guard;
                    producer(feeder);
                }));
                None
            }
        };
        // Only the threads hold senders now: their ending ends `results`.
        drop(result_tx);
        Self {
            feeder,
            results: Some(result_rx),
            credits: Some(credit_tx),
            pending: BTreeMap::new(),
            next: 0,
            threads,
        }
    }
}

impl<J, R> Ordered<J, R> {
    /// Whether the caller may [`send`](Self::send) one more job without
    /// waiting. Always false for a pipeline started with a producer or after
    /// [`finish_sending`](Self::finish_sending).
    pub(crate) fn has_room(&mut self) -> bool {
        self.feeder.as_mut().is_some_and(Feeder::has_room)
    }

    /// Sends the next job from the caller's thread. Check
    /// [`has_room`](Self::has_room) first (taking results with
    /// [`next`](Self::next) until there is): with no room this would wait for
    /// a result only this thread can take.
    pub(crate) fn send(&mut self, job: J) -> Result<(), Stopped> {
        self.feeder.as_mut().ok_or(Stopped::Lost)?.send(job)
    }

    /// No more jobs: once the results of those sent are taken,
    /// [`next`](Self::next) returns `None`.
    pub(crate) fn finish_sending(&mut self) {
        self.feeder = None;
    }

    /// The next result in job order, waiting for it. `None` once the jobs are
    /// all sent and every result has been taken.
    pub(crate) fn next(&mut self) -> Option<Result<R, Stopped>> {
        loop {
            if let Some(result) = self.pending.remove(&self.next) {
                self.next += 1;
                if let Some(credits) = &self.credits {
                    // Fails only once the feeder is gone; nothing to give back then.
                    let _ = credits.try_send(());
                }
                return Some(Ok(result));
            }
            let results = self.results.as_ref()?;
            match results.recv() {
                Ok(Message::Done(index, result)) => {
                    self.pending.insert(index, result);
                }
                Ok(Message::Panicked) => {
                    self.stop();
                    return Some(Err(Stopped::Panicked));
                }
                Err(_) => {
                    // Every thread ended: a missing result means jobs were lost.
                    let lost = !self.pending.is_empty();
                    self.stop();
                    return lost.then_some(Err(Stopped::Lost));
                }
            }
        }
    }

    fn stop(&mut self) {
        self.feeder = None;
        self.credits = None;
        self.results = None;
        self.pending.clear();
    }
}

impl<J, R> Drop for Ordered<J, R> {
    fn drop(&mut self) {
        // Closing the feeder, credit and result channels ends every thread:
        // workers on their next receive or send, a producer on its next send.
        self.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Tells the consumer that a thread died instead of leaving it waiting forever.
struct PanicGuard<R>(Sender<Message<R>>);

impl<R> Drop for PanicGuard<R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.send(Message::Panicked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Squares with a delay that makes later jobs finish first.
    fn squares(workers: usize, in_flight: usize) -> Ordered<u64, u64> {
        Ordered::start(
            workers,
            in_flight,
            || (),
            |(), index, n: u64| {
                std::thread::sleep(Duration::from_micros(((7 - index % 8) * 300) as u64));
                n * n
            },
        )
    }

    #[test]
    fn results_come_back_in_job_order_within_the_budget() {
        let mut pipeline = squares(3, 4);
        let (mut got, mut sent, mut most_in_flight) = (Vec::new(), 0u64, 0);
        while sent < 50 {
            while !pipeline.has_room() {
                got.push(pipeline.next().unwrap().unwrap());
            }
            pipeline.send(sent).unwrap();
            sent += 1;
            most_in_flight = most_in_flight.max(sent as usize - got.len());
        }
        pipeline.finish_sending();
        while let Some(result) = pipeline.next() {
            got.push(result.unwrap());
        }
        assert_eq!(got, (0..50u64).map(|n| n * n).collect::<Vec<_>>());
        assert_eq!(most_in_flight, 4);
    }

    #[test]
    fn a_producer_thread_is_held_to_the_budget() {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&sent);
        let mut pipeline = Ordered::start_with_producer(
            2,
            3,
            || (),
            |(), _, n: usize| n + 1,
            move |mut feeder| {
                for n in 0..20 {
                    if feeder.send(n).is_err() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            },
        );
        let started = std::time::Instant::now();
        while sent.load(Ordering::SeqCst) < 3 && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(sent.load(Ordering::SeqCst), 3, "nothing taken yet");
        let got: Vec<usize> = std::iter::from_fn(|| pipeline.next())
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_worker_is_reported_not_waited_for() {
        let mut pipeline = Ordered::start(
            2,
            4,
            || (),
            |(), index, ()| {
                assert_ne!(index, 2, "worker panics on job 2 (expected in this test)");
                index
            },
        );
        for _ in 0..4 {
            pipeline.send(()).unwrap();
        }
        pipeline.finish_sending();
        let results: Vec<_> = std::iter::from_fn(|| pipeline.next()).collect();
        assert_eq!(results.last(), Some(&Err(Stopped::Panicked)));
        assert!(results.len() <= 3, "nothing after the panic: {results:?}");
    }

    #[test]
    fn a_panicking_producer_is_reported_not_taken_for_the_end() {
        let mut pipeline = Ordered::start_with_producer(
            2,
            4,
            || (),
            |(), index, ()| index,
            |mut feeder| {
                let _ = feeder.send(());
                panic!("producer fails after one job (expected in this test)");
            },
        );
        // Job 0's result may come before or after the news of the panic.
        let results: Vec<_> = std::iter::from_fn(|| pipeline.next()).collect();
        assert!(
            results == [Err(Stopped::Panicked)] || results == [Ok(0), Err(Stopped::Panicked)],
            "{results:?}"
        );
    }

    #[test]
    fn dropping_mid_stream_stops_and_joins_every_thread() {
        let mut pipeline = Ordered::start_with_producer(
            2,
            2,
            || (),
            |(), index, ()| index,
            |mut feeder| while feeder.send(()).is_ok() {},
        );
        assert_eq!(pipeline.next(), Some(Ok(0)));
        drop(pipeline); // returns only once the producer and workers ended
    }
}
