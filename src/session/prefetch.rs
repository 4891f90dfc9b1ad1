//! Reading a page's session and cart in one round trip: the record read ahead of
//! the session layer's own lazy load, handed to it through a task-local.

use tower_sessions::session::{Id, Record};

tokio::task_local! {
    /// A session record read ahead of the session layer's own lazy load, in the
    /// same round trip as the cart (see `web::page`). The load of this
    /// request's session takes it instead of asking Redis again.
    static PREFETCHED: std::cell::RefCell<Option<(Id, Option<Record>)>>;
}

/// Runs `work` with `record` standing in for the next load of session `id`.
pub async fn with_prefetched<F: std::future::Future>(
    id: Id,
    record: Option<Record>,
    work: F,
) -> F::Output {
    PREFETCHED
        .scope(std::cell::RefCell::new(Some((id, record))), work)
        .await
}

pub(super) fn take_prefetched(id: &Id) -> Option<Option<Record>> {
    PREFETCHED
        .try_with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_ref() {
                Some((prefetched, _)) if prefetched == id => slot.take().map(|(_, r)| r),
                _ => None,
            }
        })
        .ok()
        .flatten()
}

/// Which user each session this replica served belonged to: a guess that lets a
/// page read the session and the cart in one round trip. Bounded: when full it
/// starts over (a miss only costs the second round trip).
#[derive(Debug, Default)]
pub struct UserHints(std::sync::Mutex<std::collections::HashMap<Id, i64>>);

impl UserHints {
    const CAPACITY: usize = 100_000;

    pub fn get(&self, id: Id) -> Option<i64> {
        self.0.lock().expect("hints lock").get(&id).copied()
    }

    pub fn remember(&self, id: Id, user_id: i64) {
        let mut hints = self.0.lock().expect("hints lock");
        if hints.len() >= Self::CAPACITY {
            hints.clear();
        }
        hints.insert(id, user_id);
    }

    pub fn forget(&self, id: Id) {
        self.0.lock().expect("hints lock").remove(&id);
    }
}
