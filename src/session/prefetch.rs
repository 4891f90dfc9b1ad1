//! Reading a page's session and cart in one round trip: the record read ahead of
//! the session layer's own lazy load, handed to it through a task-local.

use tower_sessions::session::{Id, Record};

tokio::task_local! {
    /// A session record read ahead of the session layer's own lazy load, in the
    /// same round trip as the cart (see `account::page_cart`). The load of this
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
