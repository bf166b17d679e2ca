//! Random sequences of arrivals (`acquire`, `try_acquire`), polls, drops
//! of queued calls (cancellation) and returns of slots, on one thread with
//! every poll explicit, against a model written from the docs:
//! `max_concurrent` slots and a first-come-first-served queue of
//! `max_queued` places; a slot freed goes to the first queued call at once
//! and so does its place (that call holds the slot, counted in `in_use`,
//! before it is polled again); a call dropped while it queues leaves the
//! queue, one dropped after a slot was handed to it hands the slot on;
//! `rejected` counts refusals. After every step the metrics must be the
//! model's; *during* a step, every waker the bulkhead calls (the calls a
//! slot is handed to) sees the model's state after that step, and a
//! caller arriving from inside that waker is queued or refused as the
//! model says. So no interleaving lets more calls hold slots or queue than
//! configured, or refuses a call a place the model has free.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Wake, Waker};

use super::*;

type Waiting = Pin<Box<dyn Future<Output = Result<BulkheadPermit, BulkheadRejection>> + Send>>;

/// A live caller: queued (or handed a slot, not yet polled again), or
/// holding a slot.
enum Live {
    Waiting(usize, Waiting, Waker),
    Holding { id: usize, _slot: BulkheadPermit },
}

impl Live {
    fn id(&self) -> usize {
        match self {
            Live::Waiting(id, ..) | Live::Holding { id, .. } => *id,
        }
    }
}

/// The docs' bulkhead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    slots: usize,
    places: usize,
    /// Callers holding a slot, polled since or not.
    holding: Vec<usize>,
    queue: VecDeque<usize>,
    rejected: u64,
}

impl Model {
    fn metrics(&self) -> BulkheadMetrics {
        BulkheadMetrics {
            in_use: self.holding.len(),
            queued: self.queue.len(),
            rejected: self.rejected,
        }
    }

    /// A slot freed by `id`: to the first queued call, if any.
    fn free(&mut self, id: usize) {
        self.holding.retain(|&h| h != id);
        if let Some(next) = self.queue.pop_front() {
            self.holding.push(next);
        }
    }

    /// What an `acquire` arriving now gets, without changing the model.
    fn arrival(&self) -> Arrival {
        if self.holding.len() < self.slots {
            Arrival::Slot
        } else if self.queue.len() < self.places {
            Arrival::Queued
        } else {
            Arrival::Refused
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    Slot,
    Queued,
    Refused,
}

/// What the wakers called during the step in progress must see, and what
/// they saw.
#[derive(Default)]
struct Watch {
    /// The model after the step in progress.
    after: Model,
    /// (caller woken, metrics then, what a caller arriving then got).
    woken: Vec<(usize, BulkheadMetrics, Option<Arrival>)>,
}

struct Probe {
    id: usize,
    bulkhead: Bulkhead,
    watch: Arc<Mutex<Watch>>,
}

impl Wake for Probe {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let metrics = self.bulkhead.metrics();
        let expect = self.watch.lock().unwrap().after.arrival();
        // Arrive only where the model has a place: a refusal would count
        // one more rejection than the model's (and is caught anyway, as
        // that rejection in the metrics).
        let arrival = (expect == Arrival::Queued).then(|| {
            let mut call = Box::pin(self.bulkhead.acquire());
            match call.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(_)) => Arrival::Slot,
                Poll::Ready(Err(_)) => Arrival::Refused,
                Poll::Pending => Arrival::Queued,
            }
        });
        self.watch
            .lock()
            .unwrap()
            .woken
            .push((self.id, metrics, arrival));
    }
}

/// One step of a sequence.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A new caller (this id) `acquire`s, polled once.
    Acquire(usize),
    /// A new caller (this id) `try_acquire`s.
    TryAcquire(usize),
    /// The live caller at this index is polled (if it waits).
    Poll(usize),
    /// The live caller at this index is dropped: cancelled if it waits,
    /// its slot returned if it holds one.
    Drop(usize),
}

/// One random sequence: the bulkhead, the model, the live callers.
struct Run {
    seed: u64,
    bulkhead: Bulkhead,
    watch: Arc<Mutex<Watch>>,
    model: Model,
    live: Vec<Live>,
    steps: Vec<String>,
    next_id: usize,
}

impl Run {
    fn context(&self) -> String {
        let m = &self.model;
        format!(
            "{} slots, {} places, seed {}: {:?}",
            m.slots, m.places, self.seed, self.steps
        )
    }

    /// Applies `step` to the model (first, so the wakers called during
    /// the real step know what to expect).
    fn model_step(&mut self, step: Step) {
        let model = &mut self.model;
        let said = match step {
            Step::Acquire(id) => {
                match model.arrival() {
                    Arrival::Slot => model.holding.push(id),
                    Arrival::Queued => model.queue.push_back(id),
                    Arrival::Refused => model.rejected += 1,
                }
                format!("{id} acquires")
            }
            Step::TryAcquire(id) => {
                if model.holding.len() < model.slots {
                    model.holding.push(id);
                } else {
                    model.rejected += 1;
                }
                format!("{id} try_acquires")
            }
            Step::Poll(i) => format!("{} is polled", self.live[i].id()),
            Step::Drop(i) => {
                let id = self.live[i].id();
                if model.queue.contains(&id) {
                    model.queue.retain(|&q| q != id);
                } else {
                    model.free(id);
                }
                match self.live[i] {
                    Live::Waiting(..) => format!("{id} is cancelled"),
                    Live::Holding { .. } => format!("{id} returns its slot"),
                }
            }
        };
        self.steps.push(said);
    }

    /// Applies `step` to the bulkhead; `before` is the model before it.
    fn real_step(&mut self, step: Step, before: &Model) {
        let ctx = self.context();
        let model = &self.model;
        match step {
            Step::Acquire(id) => {
                let waker = Waker::from(Arc::new(Probe {
                    id,
                    bulkhead: self.bulkhead.clone(),
                    watch: Arc::clone(&self.watch),
                }));
                let b = self.bulkhead.clone();
                let mut call: Waiting = Box::pin(async move { b.acquire().await });
                match call.as_mut().poll(&mut Context::from_waker(&waker)) {
                    Poll::Ready(Ok(permit)) => {
                        assert!(model.holding.contains(&id), "{ctx}");
                        self.live.push(Live::Holding { id, _slot: permit });
                    }
                    Poll::Ready(Err(why)) => {
                        assert_eq!(why, BulkheadRejection::QueueFull, "{ctx}");
                        assert_eq!(before.arrival(), Arrival::Refused, "{ctx}");
                    }
                    Poll::Pending => {
                        assert!(model.queue.contains(&id), "{ctx}");
                        self.live.push(Live::Waiting(id, call, waker));
                    }
                }
            }
            Step::TryAcquire(id) => match self.bulkhead.try_acquire() {
                Ok(permit) => {
                    assert!(model.holding.contains(&id), "{ctx}");
                    self.live.push(Live::Holding { id, _slot: permit });
                }
                Err(why) => {
                    assert_eq!(why, BulkheadRejection::Full, "{ctx}");
                    assert_eq!(before.holding.len(), model.slots, "{ctx}");
                }
            },
            Step::Poll(i) => {
                if let Live::Waiting(id, call, waker) = &mut self.live[i] {
                    let id = *id;
                    match call.as_mut().poll(&mut Context::from_waker(waker)) {
                        Poll::Ready(Ok(permit)) => {
                            assert!(model.holding.contains(&id), "{ctx}");
                            self.live[i] = Live::Holding { id, _slot: permit };
                        }
                        Poll::Ready(Err(why)) => panic!("{why:?}: {ctx}"),
                        Poll::Pending => assert!(model.queue.contains(&id), "{ctx}"),
                    }
                }
            }
            Step::Drop(i) => drop(self.live.swap_remove(i)),
        }
    }

    /// After a step: the metrics are the model's, and every waker called
    /// during it was a caller the step handed a slot to, which saw the
    /// model after the step.
    fn check(&self, before: &Model) {
        let ctx = self.context();
        let model = &self.model;
        assert_eq!(self.bulkhead.metrics(), model.metrics(), "{ctx}");
        let woken = std::mem::take(&mut self.watch.lock().unwrap().woken);
        let expect = model.arrival();
        for (id, metrics, arrival) in woken {
            assert!(
                model.holding.contains(&id) && !before.holding.contains(&id),
                "{id} woken without a slot handed to it: {ctx}"
            );
            assert_eq!(metrics, model.metrics(), "{id}'s waker: {ctx}");
            if expect == Arrival::Queued {
                assert_eq!(arrival, Some(Arrival::Queued), "{id}'s waker: {ctx}");
            }
        }
        assert!(model.holding.len() <= model.slots && model.queue.len() <= model.places);
    }
}

/// One random sequence of 60 steps; panics with the steps so far on a
/// mismatch.
fn run(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (slots, places) = (rng.usize(1..4), rng.usize(1..4));
    let overflow = Overflow::Queue {
        max_queued: places,
        max_wait: Duration::from_secs(3_600),
    };
    let mut run = Run {
        seed,
        bulkhead: Bulkhead::new(slots, overflow).unwrap(),
        watch: Arc::new(Mutex::new(Watch::default())),
        model: Model {
            slots,
            places,
            ..Model::default()
        },
        live: Vec::new(),
        steps: Vec::new(),
        next_id: 0,
    };
    for _ in 0..60 {
        let id = run.next_id;
        let step = match (rng.usize(0..5), run.live.len()) {
            (0, _) | (_, 0) => Step::Acquire(id),
            (1, _) => Step::TryAcquire(id),
            (2, n) => Step::Poll(rng.usize(0..n)),
            (_, n) => Step::Drop(rng.usize(0..n)),
        };
        if matches!(step, Step::Acquire(_) | Step::TryAcquire(_)) {
            run.next_id += 1;
        }
        let before = run.model.clone();
        run.model_step(step);
        {
            let mut w = run.watch.lock().unwrap();
            w.after = run.model.clone();
            w.woken.clear();
        }
        run.real_step(step, &before);
        run.check(&before);
    }
    run.live.clear();
    assert_eq!(
        run.bulkhead.metrics(),
        BulkheadMetrics {
            in_use: 0,
            queued: 0,
            rejected: run.model.rejected
        },
        "seed {seed}"
    );
}

/// Run inside the runtime's context (its timer takes the queued calls'
/// `max_wait`, which never passes on this paused clock) but outside any
/// task: polled from a task, tokio's cooperative budget would make a
/// semaphore wait return `Pending` after 128 polls, whatever it holds.
#[test]
fn random_arrivals_cancellations_and_returns_match_the_documented_model() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _context = runtime.enter();
    for seed in 0..1_500 {
        run(seed);
    }
}
