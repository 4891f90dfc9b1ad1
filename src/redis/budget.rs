//! One `REDIS_TIMEOUT` per request, not one per command.
//!
//! A page may need several Redis round trips in a row (the session, the cart, the
//! session saved back). With the timeout applied to each, a Redis that answers
//! just under it makes the page take that many timeouts. Instead, the time a
//! request spends waiting for Redis is counted (overlapping commands once), and
//! each command may wait only for what is left of `REDIS_TIMEOUT`; once it is
//! spent, the request sends no more commands (they fail at once, nothing sent:
//! for a write, "nothing changed" is then the truth). A page is answered within
//! `REDIS_TIMEOUT` of Redis waiting, plus its own work — a login's password
//! check does not eat into it.
//!
//! Outside a request (start-up checks, the command-line tools) each command keeps
//! the full timeout.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

use fred::error::{Error, ErrorKind};
use tokio::time::Instant;

tokio::task_local! {
    static BUDGET: Budget;
}

struct Budget {
    limit: Duration,
    /// Waited for Redis so far, not counting the commands in flight.
    spent: Cell<Duration>,
    /// Commands in flight, and since when at least one has been.
    in_flight: Cell<(u32, Option<Instant>)>,
}

impl Budget {
    fn left(&self, now: Instant) -> Duration {
        let waiting = match self.in_flight.get() {
            (_, Some(since)) => now - since,
            _ => Duration::ZERO,
        };
        self.limit.saturating_sub(self.spent.get() + waiting)
    }

    fn start(&self, now: Instant) {
        let (count, since) = self.in_flight.get();
        self.in_flight.set((count + 1, since.or(Some(now))));
    }

    fn end(&self, now: Instant) {
        match self.in_flight.get() {
            (1, Some(since)) => {
                self.spent.set(self.spent.get() + (now - since));
                self.in_flight.set((0, None));
            }
            (count, since) => self.in_flight.set((count.saturating_sub(1), since)),
        }
    }
}

/// Runs a request with `limit` for all of its Redis waiting together.
pub async fn scope<F: Future>(limit: Duration, request: F) -> F::Output {
    let budget = Budget {
        limit,
        spent: Cell::new(Duration::ZERO),
        in_flight: Cell::new((0, None)),
    };
    BUDGET.scope(budget, request).await
}

/// How long the next command may wait: `None` outside a request (the command's own
/// timeout holds), `Some(ZERO)` once the request's time is spent.
pub fn remaining() -> Option<Duration> {
    BUDGET.try_with(|budget| budget.left(Instant::now())).ok()
}

/// Runs one Redis command (or a pipelined few) within what is left of the
/// request's time. Spent already: not sent at all (fred sends a command when its
/// future is first polled), an error a write reports as "nothing changed". Cut
/// off while waiting: a timeout, which a write reports as "could not confirm".
///
/// The command's future is put on the heap here, once. A fred command's future is
/// ~5 KB; held inline, it made every future around it (the session's load, the
/// page extractor, each middleware) ~23 KB, moved from frame to frame and into
/// boxes several times per request: memcpy was half of the shop's own
/// instructions per page (callgrind, docs/PERFORMANCE.md). One allocation costs
/// far less.
pub fn bounded<T>(
    command: impl Future<Output = Result<T, Error>>,
) -> impl Future<Output = Result<T, Error>> {
    bounded_boxed(Box::pin(command))
}

async fn bounded_boxed<T>(
    command: std::pin::Pin<Box<impl Future<Output = Result<T, Error>>>>,
) -> Result<T, Error> {
    let Some(left) = remaining() else {
        return command.await;
    };
    if left.is_zero() {
        return Err(Error::new(
            ErrorKind::Backpressure,
            "this request's time for Redis is spent: not sent",
        ));
    }
    let _ = BUDGET.try_with(|budget| budget.start(Instant::now()));
    let result = tokio::time::timeout(left, command).await;
    let _ = BUDGET.try_with(|budget| budget.end(Instant::now()));
    result.unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Timeout,
            "Redis did not answer within the request's time",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn redis_answering_after(ms: u64, value: u32) -> Result<u32, Error> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(value)
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_time_spent_waiting_for_redis_counts() {
        assert_eq!(remaining(), None, "outside a request");
        scope(Duration::from_millis(1000), async {
            assert_eq!(remaining(), Some(Duration::from_millis(1000)));
            bounded(redis_answering_after(300, 1)).await.unwrap();
            // The request's own work (a password check) is not Redis's time.
            tokio::time::sleep(Duration::from_millis(2000)).await;
            assert_eq!(remaining(), Some(Duration::from_millis(700)));
            // Two commands at once count once.
            let (a, b) = tokio::join!(
                bounded(redis_answering_after(200, 2)),
                bounded(redis_answering_after(200, 3))
            );
            assert_eq!((a.unwrap(), b.unwrap()), (2, 3));
            assert_eq!(remaining(), Some(Duration::from_millis(500)));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_waits_only_for_what_is_left_and_then_none_is_sent() {
        scope(Duration::from_millis(1000), async {
            assert_eq!(bounded(redis_answering_after(700, 1)).await.unwrap(), 1);
            let started = Instant::now();
            let cut = bounded(redis_answering_after(700, 2)).await.unwrap_err();
            assert_eq!(*cut.kind(), ErrorKind::Timeout);
            assert_eq!(started.elapsed(), Duration::from_millis(300));
            let spent = bounded(redis_answering_after(1, 3)).await.unwrap_err();
            assert_eq!(*spent.kind(), ErrorKind::Backpressure, "not even sent");
        })
        .await;
    }
}
