//! The line in front of the hashing slots: bounded, and fair between networks.
//!
//! A password check takes tens of milliseconds of a core, and only cores − 1
//! run at once. Without a bound, checks the throttle allowed (a spray from ten
//! addresses, each within its limits) queued without end: the owner's login
//! waited 10 s behind 200 of them and got 503. So the checks waiting for a slot
//! are kept per client network and served in turn, one network after another
//! (round robin), and a network that had nothing waiting goes before those that
//! keep the line busy (as `fq_codel` serves new flows first): during a flood
//! from a few networks, a login from another waits for about one check, not for
//! the flood. And the waiting is bounded: beyond
//! [`PER_NETWORK`] waiting checks from one network, or [`IN_ALL`] on this
//! replica, a check is refused at once (the visitor is told to try again in a
//! moment) instead of waiting behind the others.
//!
//! New passwords (registration, password change) are hashed in a lane of their
//! own that is never refused: registrations are rationed by their own throttle.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Checks from one network that may wait at once (ten browsers of one household
/// logging in together all wait their turn).
pub const PER_NETWORK: usize = 10;
/// Checks that may wait at once on this replica, all networks together.
pub const IN_ALL: usize = 16;

/// Why a check was not let into the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many password checks from this network are waiting")]
    Network,
    #[error("too many password checks are waiting on this replica")]
    Replica,
}

/// Who waits: a client network (its checks are bounded), or the new passwords' lane.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    Network(String),
    NewPassword,
}

#[derive(Default)]
struct Line {
    /// Slots not in use.
    free: usize,
    /// Lanes that just started waiting, served first, in order of arrival.
    fresh: VecDeque<Lane>,
    /// Lanes that were served and still have someone waiting, in turn.
    turn: VecDeque<Lane>,
    waiting: HashMap<Lane, VecDeque<oneshot::Sender<()>>>,
}

impl Line {
    fn waiting_in(&self, lane: &Lane) -> usize {
        self.waiting
            .get(lane)
            .map_or(0, |w| w.iter().filter(|s| !s.is_closed()).count())
    }

    fn waiting_in_all(&self) -> usize {
        self.waiting
            .values()
            .map(|w| w.iter().filter(|s| !s.is_closed()).count())
            .sum()
    }

    /// The line is full: the network with the most checks waiting gives up its
    /// last place to `lane`, if it has more than one more than `lane` (the waiter
    /// who loses it is refused). False when no network waits more than `lane`.
    fn make_room_for(&mut self, lane: &Lane) -> bool {
        let mine = self.waiting_in(lane);
        let fattest = self
            .waiting
            .iter()
            .map(|(l, w)| (w.iter().filter(|s| !s.is_closed()).count(), l.clone()))
            .filter(|(_, l)| matches!(l, Lane::Network(_)))
            .max_by_key(|(n, _)| *n);
        match fattest {
            Some((n, fat)) if n > mine + 1 => {
                if let Some(queue) = self.waiting.get_mut(&fat) {
                    queue.pop_back();
                }
                true
            }
            _ => false,
        }
    }

    /// Gives a freed slot to the next lane's first live waiter, or keeps it free.
    fn hand_on(&mut self) {
        while let Some(lane) = self.fresh.pop_front().or_else(|| self.turn.pop_front()) {
            let Some(queue) = self.waiting.get_mut(&lane) else {
                continue;
            };
            let mut handed = false;
            while let Some(waiter) = queue.pop_front() {
                if waiter.send(()).is_ok() {
                    handed = true;
                    break;
                }
            }
            if queue.is_empty() {
                self.waiting.remove(&lane);
            } else {
                self.turn.push_back(lane);
            }
            if handed {
                return;
            }
        }
        self.free += 1;
    }
}

/// One replica's line for its hashing slots (cloned, it is the same line).
#[derive(Clone, Default)]
pub struct HashingLine(Arc<Mutex<Line>>);

impl std::fmt::Debug for HashingLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashingLine")
    }
}

impl HashingLine {
    /// A line to all cores but one, so that a burst of logins does not take every
    /// core away from page views.
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashingLine(Arc::new(Mutex::new(Line {
            free: cores.saturating_sub(1).max(1),
            ..Line::default()
        })))
    }

    /// Waits for a hashing slot in `lane`'s turn, or is refused at once.
    pub async fn slot(&self, lane: Lane) -> Result<Slot, Refused> {
        let ready = {
            let mut line = self.0.lock().expect("hashing line");
            if line.free > 0 && line.waiting.is_empty() {
                line.free -= 1;
                return Ok(Slot(self.0.clone()));
            }
            if let Lane::Network(_) = lane {
                if line.waiting_in(&lane) >= PER_NETWORK {
                    return Err(Refused::Network);
                }
                if line.waiting_in_all() >= IN_ALL && !line.make_room_for(&lane) {
                    return Err(Refused::Replica);
                }
            }
            let (send, ready) = oneshot::channel();
            if !line.waiting.contains_key(&lane) {
                line.fresh.push_back(lane.clone());
            }
            line.waiting.entry(lane).or_default().push_back(send);
            ready
        };
        let mut waiting = Waiting {
            line: self.0.clone(),
            ready: Some(ready),
        };
        let handed = match waiting.ready.as_mut() {
            Some(ready) => ready.await.is_ok(),
            None => false,
        };
        waiting.ready = None;
        if handed {
            Ok(Slot(self.0.clone()))
        } else {
            // Its place was given to a network with fewer waiting.
            Err(Refused::Replica)
        }
    }
}

/// A hashing slot, given back when dropped.
pub struct Slot(Arc<Mutex<Line>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.lock().expect("hashing line").hand_on();
    }
}

/// A place in the line. A request given up while waiting (the client went away)
/// gives back a slot that was handed to it meanwhile, so none is ever lost.
struct Waiting {
    line: Arc<Mutex<Line>>,
    ready: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut ready) = self.ready.take() {
            ready.close();
            if ready.try_recv().is_ok() {
                self.line.lock().expect("hashing line").hand_on();
            }
        }
    }
}
