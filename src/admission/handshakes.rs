//! Each worker's cap on TLS handshakes in progress, and the fair queue in front of it. The
//! cap is `max_handshakes_in_flight` when that is set, else the worker's adaptive limit
//! ([`super::adaptive`], fed by [`super::probe`]).
//!
//! The gate is per worker (`Rc`, no `Send`): a handshake is CPU work on this worker's core,
//! so the cap is per core too, and nothing here is shared between workers.
//!
//! **Fair scheduling.** While a slot is free and nobody waits, a connection goes straight
//! through. Otherwise it waits, in one of two classes:
//! - *priority*: resumption attempts (see `tls::hello`) and allowlisted clients, served
//!   first, in arrival order;
//! - *by country*: one FIFO per country, served by start-time fair queueing: every
//!   country has a virtual finish time that grows by `1 / weight` per handshake it is
//!   given, and the next slot goes to the waiting country with the smallest one. A
//!   country's weight is its baseline new-connection rate (from the stats windows, see
//!   [`super::shares`]), so when handshakes are scarce each country gets capacity in
//!   proportion to its usual traffic: a country at its baseline gets all it asks for,
//!   and a country at ten times its baseline queues behind everyone else.
//!
//! The last free slot is kept for a country that holds none (or a priority connection): a
//! flood holding every other slot cannot take it, so a newcomer from elsewhere starts its
//! handshake at once instead of waiting for one of the flood's handshakes to end (each of
//! which lasts a round trip to a client that may be slow). With one slot, nothing changes.
//!
//! **A standing queue sheds the country furthest over its share.** A queue that stays
//! long is no longer absorbing a burst: the arrivals outrun the handshakes. As CoDel does
//! with packets, the gate watches the shortest wait of the connections it served in each
//! [`SOJOURN_WINDOW`]; while that shortest wait is over [`SOJOURN_TARGET`] (or nobody was
//! served while some waited), a newcomer of the country furthest ahead of its share
//! among those waiting (or further) is refused at once, reason `fair_share`, before any
//! TLS byte, instead of joining a queue it would only lengthen. Resumption attempts and
//! allowlisted clients never are. A flood that holds its connections for seconds is
//! therefore shed at about the rate it exceeds the handshake capacity, and the queue
//! stays short for everyone, the flooding country's own clients included.
//!
//! When the queue is full, a newcomer takes the place of the newest waiter of the country
//! furthest ahead of its share (that waiter is closed, reason `fair_share`), if the
//! newcomer's own country is behind it; otherwise the newcomer is refused
//! (`handshake_queue_full`). A waiter gives up after `handshake_queue_timeout`.
//! Connections already past their handshake never wait here: their requests are not gated.
//!
//! A connection asks for a slot once its ClientHello has arrived
//! (`tls::accept_tls_gated`): a client that connects and says nothing costs no CPU and
//! takes no slot, and the gate runs before any reply, so a refusal costs almost nothing.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::adaptive::AdaptiveLimit;
use super::shares::FairShares;
use crate::labels::{CountryIdx, RejectReason};

/// Where a gate reports its queue: the number of waiters whenever it changes, and how long
/// each wait lasted. The worker wires it to its stats shard; the gate knows no more of it.
pub trait GateObserver {
    /// The number of connections waiting changed to `waiting`.
    fn queue_depth(&self, waiting: usize);
    /// A connection waited `waited` in the queue (however the wait ended).
    fn queue_waited(&self, waited: Duration);
    /// The limit in force changed to `limit`.
    fn limit(&self, _limit: usize) {}
}

/// Who is asking for a handshake slot.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    /// The client's country slot.
    pub country: CountryIdx,
    /// Served before every country queue (resumption attempt or allowlisted client).
    pub priority: bool,
}

/// The limits `acquire` applies (from `[admission]`).
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// Handshakes in flight on this worker; `None`: the worker's adaptive limit.
    pub in_flight: Option<usize>,
    /// Waiters allowed.
    pub queue: usize,
    /// Longest wait.
    pub timeout: Duration,
}

type Grant = Result<HandshakePermit, RejectReason>;

/// The wait of served connections above which the queue counts as standing.
pub const SOJOURN_TARGET: Duration = Duration::from_millis(100);
/// How long the served connections' waits must all stay over [`SOJOURN_TARGET`].
pub const SOJOURN_WINDOW: Duration = Duration::from_millis(100);

/// One connection waiting for a slot.
#[derive(Debug)]
struct Waiter {
    tx: oneshot::Sender<Grant>,
    ticket: Ticket,
    /// When it started waiting (tokio's clock, which tests can pause).
    since: tokio::time::Instant,
}

/// The queue's waits over the current sojourn window, and the verdict of the last one.
#[derive(Debug)]
struct Sojourn {
    window_start: tokio::time::Instant,
    /// Shortest wait of a connection served in this window.
    shortest: Option<Duration>,
    /// The last window's verdict: every served wait over the target, or none served while
    /// some waited.
    standing: bool,
}

impl Default for Sojourn {
    fn default() -> Self {
        Self {
            window_start: tokio::time::Instant::now(),
            shortest: None,
            standing: false,
        }
    }
}

impl Sojourn {
    /// Closes the window if it is over (`waiting`: connections in the queue now).
    fn roll(&mut self, now: tokio::time::Instant, waiting: usize) {
        if now.saturating_duration_since(self.window_start) < SOJOURN_WINDOW {
            return;
        }
        self.standing = match self.shortest {
            Some(d) => d > SOJOURN_TARGET,
            None => waiting > 0,
        };
        self.shortest = None;
        self.window_start = now;
    }

    /// A queued connection was served after `waited`.
    fn served(&mut self, waited: Duration) {
        self.shortest = Some(self.shortest.map_or(waited, |d| d.min(waited)));
    }
}

/// The scheduler state (touched only by this worker's thread).
#[derive(Debug, Default)]
struct State {
    limit: usize,
    in_flight: usize,
    /// Slots held per country slot (grown on first use).
    held: Vec<u32>,
    /// Live waiters (entries whose connection gave up are skipped when met).
    waiting: usize,
    priority: VecDeque<Waiter>,
    /// One FIFO per country slot (grown on first use).
    countries: Vec<VecDeque<Waiter>>,
    /// Virtual finish time per country slot.
    finish: Vec<f64>,
    /// Virtual time: the start tag of the last country served.
    clock: f64,
    /// The adaptive limit (used while `in_flight` is not set).
    adaptive: AdaptiveLimit,
    /// Whether the last `acquire` ran on the adaptive limit.
    adaptive_mode: bool,
    /// Whether the queue is standing.
    sojourn: Sojourn,
}

/// One worker's handshake gate.
pub struct HandshakeGate {
    state: RefCell<State>,
    observer: Box<dyn GateObserver>,
    shares: Arc<FairShares>,
    /// When a handshake last asked for a slot (the probe parks when it is long ago).
    last_asked: Cell<Option<Instant>>,
    /// Whether the probe is parked, waiting for `wake`.
    probe_parked: Cell<bool>,
    /// Wakes the parked probe.
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for HandshakeGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeGate")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A handshake slot; frees it (for the next waiter) when dropped.
#[derive(Debug)]
pub struct HandshakePermit {
    gate: Option<Rc<HandshakeGate>>,
    country: CountryIdx,
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(self.country);
        }
    }
}

impl HandshakePermit {
    /// The handshake this slot was for took `spent` of the worker's time.
    pub fn record_work(&self, spent: Duration) {
        if let Some(gate) = &self.gate {
            gate.record_work(spent);
        }
    }

    /// Forgets the slot without freeing it (it was never handed out).
    fn disarm(mut self) {
        self.gate = None;
    }
}

impl HandshakeGate {
    /// A gate for one worker; its queue depth and waits are reported to `observer`, its
    /// country weights read from `shares`.
    pub fn new(observer: Box<dyn GateObserver>, shares: Arc<FairShares>) -> Rc<Self> {
        Rc::new(Self {
            state: RefCell::new(State::default()),
            observer,
            shares,
            last_asked: Cell::new(None),
            probe_parked: Cell::new(false),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The limit in force now: the fixed one of the last `acquire`, or the adaptive one.
    pub fn limit(&self) -> usize {
        self.state.borrow().limit
    }

    /// Handshakes holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight
    }

    /// The adaptive limit's delay target now.
    pub fn delay_target(&self) -> Duration {
        self.state.borrow().adaptive.target()
    }

    /// One handshake's CPU time (for the adaptive limit's share and target).
    pub fn record_work(&self, spent: Duration) {
        self.state.borrow_mut().adaptive.note_work(spent);
    }

    /// The probe measured the worker's scheduling delay: feed the adaptive limit, and hand
    /// out slots a raised limit frees.
    pub fn observe_delay(self: &Rc<Self>, now: Instant, delay: Duration) {
        let raised = {
            let mut st = self.state.borrow_mut();
            let in_flight = st.in_flight;
            let changed = st.adaptive.on_delay(now, delay, in_flight);
            if !changed || !st.adaptive_mode {
                return;
            }
            let before = st.limit;
            st.limit = st.adaptive.limit();
            self.observer.limit(st.limit);
            st.limit > before && st.waiting > 0
        };
        if raised {
            self.dispatch();
        }
    }

    /// Whether the probe has work: the adaptive limit is in use and a handshake asked for
    /// a slot within `within` of `now` (or one runs or waits).
    pub fn probe_wanted(&self, now: Instant, within: Duration) -> bool {
        let st = self.state.borrow();
        let recent = self
            .last_asked
            .get()
            .is_some_and(|at| now.saturating_duration_since(at) < within);
        st.adaptive_mode && (recent || st.in_flight > 0 || st.waiting > 0)
    }

    /// Parks the probe until the next handshake asks for a slot.
    pub async fn park_probe(&self) {
        self.probe_parked.set(true);
        self.wake.notified().await;
        self.probe_parked.set(false);
    }

    /// Connections waiting for a handshake slot now.
    pub fn waiting(&self) -> usize {
        self.state.borrow().waiting
    }

    /// Waits for a handshake slot: at once when one is free and nobody waits, else in the
    /// fair queue for at most `limits.timeout`. `Err` names why the connection is refused.
    pub async fn acquire(self: &Rc<Self>, limits: GateLimits, ticket: Ticket) -> Grant {
        self.last_asked.set(Some(Instant::now()));
        // The probe serves the adaptive limit only: a fixed one never wakes it.
        if limits.in_flight.is_none() && self.probe_parked.get() {
            self.probe_parked.set(false);
            self.wake.notify_one();
        }
        let rx = {
            let mut st = self.state.borrow_mut();
            st.adaptive_mode = limits.in_flight.is_none();
            let limit = limits.in_flight.unwrap_or_else(|| st.adaptive.limit());
            let raised = limit > st.limit;
            if limit != st.limit {
                self.observer.limit(limit);
            }
            st.limit = limit;
            if raised && st.waiting > 0 {
                drop(st);
                self.dispatch();
                st = self.state.borrow_mut();
            }
            // Dispatch is eager, so a slot free while others wait is one none of them may
            // take (see `may_take`): it is this newcomer's if it may.
            if Self::may_take(&st, ticket) {
                Self::take(&mut st, ticket.country);
                self.charge(&mut st, ticket);
                return Ok(HandshakePermit {
                    gate: Some(Rc::clone(self)),
                    country: ticket.country,
                });
            }
            let now = tokio::time::Instant::now();
            let waiting = st.waiting;
            st.sojourn.roll(now, waiting);
            if Self::sheds(&st, ticket) {
                st.adaptive.note_queued();
                self.shares.mark_saturated();
                return Err(RejectReason::FairShare);
            }
            if st.waiting >= limits.queue && !self.evict_for(&mut st, ticket) {
                return Err(RejectReason::HandshakeQueueFull);
            }
            let (tx, rx) = oneshot::channel();
            let waiter = Waiter {
                tx,
                ticket,
                since: now,
            };
            if ticket.priority {
                st.priority.push_back(waiter);
            } else {
                let i = usize::from(ticket.country.0);
                if st.countries.len() <= i {
                    st.countries.resize_with(i + 1, VecDeque::new);
                }
                st.countries[i].push_back(waiter);
            }
            st.waiting += 1;
            st.adaptive.note_queued();
            self.observer.queue_depth(st.waiting);
            self.shares.mark_saturated();
            // The slot kept free for other countries may be this newcomer's.
            let free = st.in_flight < st.limit;
            drop(st);
            if free {
                self.dispatch();
            }
            rx
        };
        let queued_at = Instant::now();
        let mut queued = Queued {
            gate: self,
            rx,
            evicted: false,
        };
        let result = match tokio::time::timeout(limits.timeout, &mut queued.rx).await {
            Ok(Ok(grant)) => grant,
            Ok(Err(_)) | Err(_) => Err(RejectReason::HandshakeQueueTimeout),
        };
        queued.evicted = matches!(result, Err(RejectReason::FairShare));
        self.observer.queue_waited(queued_at.elapsed());
        result
    }

    /// Whether a new connection of `country` would be refused at once if it asked now: every
    /// slot taken, the queue full, and no waiter of a country further ahead of its share to
    /// make room. Checked before the ClientHello is read, so a flood that cannot get in is
    /// closed without reading or parsing anything. (Such a connection is not classified, so
    /// a resumption attempt from that country is refused with it: under a full queue, the
    /// few it might have been are not worth parsing every hello of the flood.)
    pub fn refuses_now(&self, limits: GateLimits, country: CountryIdx) -> bool {
        let st = self.state.borrow();
        let limit = limits.in_flight.unwrap_or_else(|| st.adaptive.limit());
        let ticket = Ticket {
            country,
            priority: false,
        };
        // A standing queue's shedding waits for the ClientHello (`acquire`): a resumption
        // attempt is never refused by it.
        if (st.in_flight < limit && Self::may_take(&st, ticket)) || st.waiting < limits.queue {
            return false;
        }
        let mine = Self::start_tag(&st, usize::from(country.0));
        Self::furthest_waiting(&st).is_none_or(|f| mine >= f)
    }

    /// Whether a standing queue sheds `ticket` (it would have to wait): its country is
    /// ahead of its share (its start tag is past the virtual clock: it was given more than
    /// its share lately) and at or beyond the furthest ahead among the countries waiting.
    /// A country within its share (start tag at the clock) is never shed here, so a queue
    /// that holds only such countries (the flood already capped) sheds none of them.
    fn sheds(st: &State, ticket: Ticket) -> bool {
        if ticket.priority || !st.sojourn.standing || st.waiting == 0 {
            return false;
        }
        let mine = Self::start_tag(st, usize::from(ticket.country.0));
        mine > st.clock && Self::furthest_waiting(st).is_some_and(|f| mine >= f)
    }

    /// The largest start tag among the countries with waiters (the one furthest ahead of
    /// its share), if any country waits.
    fn furthest_waiting(st: &State) -> Option<f64> {
        (0..st.countries.len())
            .filter(|i| !st.countries[*i].is_empty())
            .map(|i| Self::start_tag(st, i))
            .max_by(f64::total_cmp)
    }

    /// Whether `ticket` may take a free slot now. The last free slot is kept for a country
    /// that holds none (or a priority connection): a flood holding every other slot cannot
    /// take it, so a newcomer from elsewhere gets a slot at once instead of waiting for one
    /// of the flood's handshakes to end.
    fn may_take(st: &State, ticket: Ticket) -> bool {
        let free = st.limit.saturating_sub(st.in_flight);
        let holds = st
            .held
            .get(usize::from(ticket.country.0))
            .copied()
            .unwrap_or(0);
        free > 1 || (free == 1 && (ticket.priority || holds == 0))
    }

    /// Takes a slot for `country`.
    fn take(st: &mut State, country: CountryIdx) {
        st.in_flight += 1;
        let i = usize::from(country.0);
        if st.held.len() <= i {
            st.held.resize(i + 1, 0);
        }
        st.held[i] += 1;
        let in_flight = st.in_flight;
        st.adaptive.note_in_flight(in_flight);
    }

    /// Gives back a slot of `country`.
    fn give_back(st: &mut State, country: CountryIdx) {
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some(h) = st.held.get_mut(usize::from(country.0)) {
            *h = h.saturating_sub(1);
        }
    }

    /// Counts a handshake against `ticket`'s country (priority tickets are not charged).
    fn charge(&self, st: &mut State, ticket: Ticket) {
        if ticket.priority {
            return;
        }
        let i = usize::from(ticket.country.0);
        if st.finish.len() <= i {
            st.finish.resize(i + 1, 0.0);
        }
        let start = st.finish[i].max(st.clock);
        st.finish[i] = start + 1.0 / self.shares.weight(ticket.country);
        // Virtual time follows every handshake served, queued or not: a country served
        // while nobody waited must not bank a lead (or a debt) for when the queue fills.
        st.clock = st.clock.max(start);
    }

    /// The virtual start tag country `i` would get now.
    fn start_tag(st: &State, i: usize) -> f64 {
        st.finish.get(i).copied().unwrap_or(0.0).max(st.clock)
    }

    /// Makes room in a full queue for `ticket` by closing the newest live waiter of the
    /// country furthest ahead of its share, when `ticket`'s country is behind it.
    fn evict_for(&self, st: &mut State, ticket: Ticket) -> bool {
        let mine = if ticket.priority {
            f64::NEG_INFINITY
        } else {
            Self::start_tag(st, usize::from(ticket.country.0))
        };
        loop {
            let victim = (0..st.countries.len())
                .filter(|i| !st.countries[*i].is_empty())
                .map(|i| (i, Self::start_tag(st, i)))
                .filter(|(_, tag)| *tag > mine)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((i, _)) = victim else {
                return false;
            };
            let Some(w) = st.countries[i].pop_back() else {
                continue;
            };
            if w.tx.send(Err(RejectReason::FairShare)).is_ok() {
                // The room is made now (its `Queued` guard knows not to count it again).
                st.waiting = st.waiting.saturating_sub(1);
                return true;
            }
        }
    }

    /// A slot was freed: hand it to the next waiter.
    fn release(self: &Rc<Self>, country: CountryIdx) {
        {
            let mut st = self.state.borrow_mut();
            Self::give_back(&mut st, country);
        }
        self.dispatch();
    }

    /// Hands free slots to waiters: priority first, then the country with the smallest
    /// virtual start tag among those that may take a slot (see `may_take`).
    fn dispatch(self: &Rc<Self>) {
        loop {
            let mut st = self.state.borrow_mut();
            if st.in_flight >= st.limit {
                return;
            }
            let waiter = if let Some(w) = st.priority.pop_front() {
                w
            } else {
                let next = (0..st.countries.len())
                    .filter(|i| !st.countries[*i].is_empty())
                    .filter(|i| {
                        let country = CountryIdx(u16::try_from(*i).unwrap_or(0));
                        let ticket = Ticket {
                            country,
                            priority: false,
                        };
                        Self::may_take(&st, ticket)
                    })
                    .map(|i| (i, Self::start_tag(&st, i)))
                    .min_by(|a, b| a.1.total_cmp(&b.1));
                let Some((i, tag)) = next else {
                    return;
                };
                let Some(w) = st.countries[i].pop_front() else {
                    continue;
                };
                if w.tx.is_closed() {
                    continue;
                }
                st.clock = tag;
                w
            };
            if waiter.tx.is_closed() {
                continue;
            }
            let ticket = waiter.ticket;
            let now = tokio::time::Instant::now();
            st.sojourn
                .served(now.saturating_duration_since(waiter.since));
            let waiting = st.waiting;
            st.sojourn.roll(now, waiting);
            Self::take(&mut st, ticket.country);
            self.charge(&mut st, ticket);
            drop(st);
            let permit = HandshakePermit {
                gate: Some(Rc::clone(self)),
                country: ticket.country,
            };
            if let Err(Ok(permit)) = waiter.tx.send(Ok(permit)) {
                // The waiter gave up in the meantime: take the slot back, try the next.
                permit.disarm();
                let mut st = self.state.borrow_mut();
                Self::give_back(&mut st, ticket.country);
            }
        }
    }
}

/// A connection in the queue. Lowers the live waiter count however the wait ends (slot,
/// timeout, or the connection dropped), except after an eviction, which already did.
struct Queued<'a> {
    gate: &'a HandshakeGate,
    rx: oneshot::Receiver<Grant>,
    evicted: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.evicted {
            return;
        }
        // Dropped before it saw the answer: an eviction already lowered the count; a
        // granted slot is freed when the permit (this temporary) drops, after the borrow.
        if let Ok(Err(RejectReason::FairShare)) = self.rx.try_recv() {
            return;
        }
        let mut st = self.gate.state.borrow_mut();
        st.waiting = st.waiting.saturating_sub(1);
        self.gate.observer.queue_depth(st.waiting);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::RefCell as StdRefCell;

    use super::*;
    use crate::geo::country;

    fn limits(in_flight: usize, queue: usize, ms: u64) -> GateLimits {
        GateLimits {
            in_flight: Some(in_flight),
            queue,
            timeout: Duration::from_millis(ms),
        }
    }

    fn ticket(code: &str) -> Ticket {
        Ticket {
            country: country::index_of(code),
            priority: false,
        }
    }

    /// What a gate reported: its last queue depth and every wait.
    #[derive(Default)]
    pub(super) struct Seen {
        pub depth: std::cell::Cell<usize>,
        pub waits: std::cell::Cell<usize>,
    }

    impl GateObserver for Rc<Seen> {
        fn queue_depth(&self, waiting: usize) {
            self.depth.set(waiting);
        }
        fn queue_waited(&self, _: Duration) {
            self.waits.set(self.waits.get() + 1);
        }
    }

    fn gate() -> Rc<HandshakeGate> {
        gate_seen().0
    }

    fn gate_seen() -> (Rc<HandshakeGate>, Rc<Seen>) {
        let seen = Rc::new(Seen::default());
        let gate = HandshakeGate::new(Box::new(Rc::clone(&seen)), Arc::new(FairShares::default()));
        (gate, seen)
    }

    /// Spawns waiters that record, in order, the label of each one that got a slot (and
    /// hold it until the test drops the permits it collects).
    #[allow(clippy::type_complexity)]
    fn spawn_waiter(
        gate: &Rc<HandshakeGate>,
        l: GateLimits,
        t: Ticket,
        label: &'static str,
        log: &Rc<StdRefCell<Vec<Result<&'static str, RejectReason>>>>,
        held: &Rc<StdRefCell<Vec<HandshakePermit>>>,
    ) {
        let (g, log, held) = (Rc::clone(gate), Rc::clone(log), Rc::clone(held));
        tokio::task::spawn_local(async move {
            match g.acquire(l, t).await {
                Ok(p) => {
                    log.borrow_mut().push(Ok(label));
                    held.borrow_mut().push(p);
                }
                Err(e) => log.borrow_mut().push(Err(e)),
            }
        });
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_country_behind_its_share_goes_first_and_priority_before_all() {
        let gate = gate();
        let l = limits(1, 16, 10_000);
        let log = Rc::new(StdRefCell::new(Vec::new()));
        let held = Rc::new(StdRefCell::new(Vec::new()));
        tokio::task::LocalSet::new()
            .run_until(async {
                let first = gate.acquire(l, ticket("BR")).await.unwrap();
                for label in ["br1", "br2", "br3"] {
                    spawn_waiter(&gate, l, ticket("BR"), label, &log, &held);
                }
                spawn_waiter(&gate, l, ticket("DE"), "de1", &log, &held);
                let resumed = Ticket {
                    priority: true,
                    ..ticket("BR")
                };
                spawn_waiter(&gate, l, resumed, "resumed", &log, &held);
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 5);
                drop(first);
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                    let next = held.borrow_mut().pop();
                    drop(next);
                }
                tokio::task::yield_now().await;
            })
            .await;
        let order: Vec<_> = log.borrow().iter().map(|r| r.unwrap()).collect();
        assert_eq!(order, ["resumed", "de1", "br1", "br2", "br3"]);
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_full_queue_makes_room_for_a_country_behind_its_share() {
        let (gate, seen) = gate_seen();
        let l = limits(1, 2, 1000);
        let log = Rc::new(StdRefCell::new(Vec::new()));
        let held = Rc::new(StdRefCell::new(Vec::new()));
        tokio::task::LocalSet::new()
            .run_until(async {
                let first = gate.acquire(l, ticket("BR")).await.unwrap();
                spawn_waiter(&gate, l, ticket("BR"), "br1", &log, &held);
                spawn_waiter(&gate, l, ticket("BR"), "br2", &log, &held);
                tokio::task::yield_now().await;
                // Full: another BR is refused (and known to be before it asks); a DE takes
                // br2's place.
                assert!(gate.refuses_now(l, ticket("BR").country));
                assert!(!gate.refuses_now(l, ticket("DE").country));
                let full = gate.acquire(l, ticket("BR")).await.map(|_| ()).unwrap_err();
                assert_eq!(full, RejectReason::HandshakeQueueFull);
                spawn_waiter(&gate, l, ticket("DE"), "de1", &log, &held);
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 2);
                assert_eq!(seen.depth.get(), 2);
                drop(first);
                tokio::task::yield_now().await;
                held.borrow_mut().clear();
                tokio::task::yield_now().await;
                held.borrow_mut().clear();
                tokio::task::yield_now().await;
                // Time out: with the slot held, the next waiter gives up after 1 s.
                let hold = gate.acquire(l, ticket("JP")).await.unwrap();
                let late = gate.acquire(l, ticket("JP")).await.map(|_| ()).unwrap_err();
                assert_eq!(late, RejectReason::HandshakeQueueTimeout);
                drop(hold);
            })
            .await;
        let log = log.borrow();
        assert_eq!(log[0], Err(RejectReason::FairShare), "br2 made room");
        assert_eq!(&log[1..], [Ok("de1"), Ok("br1")]);
        assert_eq!(gate.waiting(), 0);
        assert_eq!(seen.waits.get(), 4, "br1, br2, de1 and the late JP");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_standing_queue_sheds_the_country_furthest_over_its_share_only() {
        let gate = gate();
        let l = limits(1, 64, 10_000);
        let log = Rc::new(StdRefCell::new(Vec::new()));
        let held = Rc::new(StdRefCell::new(Vec::new()));
        tokio::task::LocalSet::new()
            .run_until(async {
                let first = gate.acquire(l, ticket("BR")).await.unwrap();
                for label in ["br1", "br2", "br3"] {
                    spawn_waiter(&gate, l, ticket("BR"), label, &log, &held);
                }
                tokio::task::yield_now().await;
                // A burst: served after 150 ms of waiting, then nobody served for a window.
                tokio::time::advance(Duration::from_millis(150)).await;
                drop(first);
                tokio::task::yield_now().await;
                tokio::time::advance(SOJOURN_WINDOW).await;
                // Standing now: BR is refused at once, before any TLS byte.
                let shed = gate.acquire(l, ticket("BR")).await.map(|_| ()).unwrap_err();
                assert_eq!(shed, RejectReason::FairShare);
                // Another country (two of its newcomers: within its share, the second is
                // not shed for the first), and a resumption attempt from BR, still queue.
                spawn_waiter(&gate, l, ticket("DE"), "de1", &log, &held);
                spawn_waiter(&gate, l, ticket("DE"), "de2", &log, &held);
                let resumed = Ticket {
                    priority: true,
                    ..ticket("BR")
                };
                spawn_waiter(&gate, l, resumed, "resumed", &log, &held);
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 5);
                // Served promptly from now on: the queue stops standing after one window.
                for _ in 0..5 {
                    held.borrow_mut().clear();
                    tokio::task::yield_now().await;
                }
                tokio::time::advance(SOJOURN_WINDOW).await;
                held.borrow_mut().clear();
                tokio::task::yield_now().await;
                let p = gate.acquire(l, ticket("BR")).await.unwrap();
                let next = Rc::clone(&gate);
                let waiter = tokio::task::spawn_local(async move {
                    next.acquire(l, ticket("BR")).await.map(|_| ())
                });
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 1, "queued again, not shed");
                drop(p);
                assert!(waiter.await.unwrap().is_ok());
            })
            .await;
        let order: Vec<_> = log.borrow().iter().map(|r| r.unwrap()).collect();
        assert_eq!(order, ["br1", "resumed", "de1", "br2", "de2", "br3"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_fixed_limit_the_adaptive_one_starts_at_its_initial_value() {
        let gate = gate();
        let adaptive = GateLimits {
            in_flight: None,
            ..limits(1, 1, 1)
        };
        let initial = crate::admission::adaptive::INITIAL_LIMIT as usize;
        let mut v = Vec::new();
        // Every slot but the one kept for another country, at once.
        for _ in 1..initial {
            v.push(gate.acquire(adaptive, ticket("BR")).await.unwrap());
        }
        assert_eq!(gate.limit(), initial);
        assert_eq!(gate.waiting(), 0);
        assert!(!gate.refuses_now(adaptive, ticket("DE").country));
        v.push(gate.acquire(adaptive, ticket("DE")).await.unwrap());
        assert_eq!(gate.in_flight(), initial);
        // Full, and the queue of one is free: BR would wait, not be refused.
        assert!(!gate.refuses_now(adaptive, ticket("BR").country));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod flood_tests {
    use super::*;
    use crate::geo::country;

    /// A flood that was admitted freely before the gate saturated has run far ahead of its
    /// share, so a country at its usual rate still makes room in the full queue.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn after_free_admissions_a_quiet_country_still_gets_in() {
        let shares = Arc::new(FairShares::default());
        let (br, de) = (country::index_of("BR"), country::index_of("DE"));
        let seen = Rc::new(tests::Seen::default());
        let gate = HandshakeGate::new(Box::new(seen), Arc::clone(&shares));
        let l = GateLimits {
            in_flight: Some(8),
            queue: 16,
            timeout: Duration::from_secs(2),
        };
        let t = |country| Ticket {
            country,
            priority: false,
        };
        tokio::task::LocalSet::new()
            .run_until(async {
                // DE's usual traffic, first before any baseline exists (every weight at
                // the floor), then with its baseline.
                for _ in 0..150 {
                    drop(gate.acquire(l, t(de)).await.unwrap());
                }
                shares.set_baselines([(de, 10.0)].into_iter());
                for _ in 0..150 {
                    drop(gate.acquire(l, t(de)).await.unwrap());
                }
                // BR takes every slot but the last, then fills the queue.
                let mut held = Vec::new();
                for _ in 0..7 {
                    held.push(gate.acquire(l, t(br)).await.unwrap());
                }
                let mut waiters = Vec::new();
                for _ in 0..16 {
                    let g = Rc::clone(&gate);
                    waiters.push(tokio::task::spawn_local(async move {
                        g.acquire(l, t(br)).await.map(|_| ())
                    }));
                }
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 16, "the last slot is not BR's");
                assert!(gate.refuses_now(l, br));
                assert!(!gate.refuses_now(l, de));
                // DE gets the kept slot at once, without waiting for a BR handshake.
                let de_slot = gate.acquire(l, t(de)).await.unwrap();
                assert_eq!(gate.waiting(), 16);
                drop(de_slot);
                // A freed slot goes to the queued BR connections (each of which lets go of
                // its slot at once here, so the whole queue drains).
                drop(held.pop());
                tokio::task::yield_now().await;
                assert_eq!(gate.waiting(), 0);
                drop(held);
                for w in waiters {
                    let _ = w.await;
                }
            })
            .await;
    }
}
