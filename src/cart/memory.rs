//! The dev stand-in for the carts' Redis keys, in process memory: the same
//! answers as the scripts in `redis.rs`, for `cargo run` without Redis.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Added, CartOwner, Cleared, Updated, MAX_QUANTITY};

/// Why the in-memory carts refuse a change before looking at it (what
/// `GUARD_LUA`'s -1 and -2 say in Redis); both changes answer it the same way.
#[derive(Debug, Clone, Copy)]
enum Refused {
    AlreadyApplied,
    CartRetired,
}

impl From<Refused> for Added {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::AlreadyApplied => Added::AlreadyApplied,
            Refused::CartRetired => Added::CartRetired,
        }
    }
}

impl From<Refused> for Updated {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::AlreadyApplied => Updated::AlreadyApplied,
            Refused::CartRetired => Updated::CartRetired,
        }
    }
}

/// The dev twin of the Redis keys above.
#[derive(Debug, Default)]
pub(super) struct MemoryCarts {
    pub(super) carts: HashMap<String, BTreeMap<i64, u32>>,
    pub(super) submissions: HashMap<String, HashSet<String>>,
    pub(super) retired: HashSet<String>,
}

impl MemoryCarts {
    /// [`CartStore::add`] in memory, once the store has checked the epoch guard.
    pub(super) fn add(
        &mut self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
        submission: Option<&str>,
    ) -> Added {
        if let Some(refused) = self.guard(owner, submission) {
            return refused.into();
        }
        let line = self
            .carts
            .entry(owner.redis_key())
            .or_default()
            .entry(product_id)
            .or_default();
        let wanted = *line + quantity;
        *line = wanted.min(MAX_QUANTITY);
        let quantity = *line;
        self.remember(owner, submission);
        Added::Applied {
            quantity,
            capped: wanted > MAX_QUANTITY,
        }
    }

    /// [`CartStore::update`] in memory.
    pub(super) fn update(
        &mut self,
        owner: &CartOwner,
        product_id: i64,
        quantity: u32,
        submission: Option<&str>,
    ) -> Updated {
        if let Some(refused) = self.guard(owner, submission) {
            return refused.into();
        }
        let Some(cart) = self.carts.get_mut(&owner.redis_key()) else {
            return Updated::NotInCart;
        };
        if !cart.contains_key(&product_id) {
            return Updated::NotInCart;
        }
        let outcome = if quantity == 0 {
            cart.remove(&product_id);
            Updated::Removed
        } else {
            cart.insert(product_id, quantity);
            Updated::Set
        };
        self.remember(owner, submission);
        outcome
    }

    /// [`CartStore::clear_for_order`](super::CartStore::clear_for_order) in memory.
    pub(super) fn clear_for_order(
        &mut self,
        owner: &CartOwner,
        submission: &str,
        expected: &[(i64, u32)],
    ) -> Cleared {
        let key = owner.redis_key();
        if self
            .submissions
            .get(&key)
            .is_some_and(|s| s.contains(submission))
        {
            return Cleared::AlreadyDone;
        }
        let current: Vec<(i64, u32)> = self
            .carts
            .get(&key)
            .map(|cart| cart.iter().map(|(p, q)| (*p, *q)).collect())
            .unwrap_or_default();
        let mut wanted = expected.to_vec();
        wanted.sort_unstable();
        let cleared = if current == wanted {
            self.carts.remove(&key);
            Cleared::Emptied
        } else {
            Cleared::Kept
        };
        self.remember(owner, Some(submission));
        cleared
    }

    /// The in-memory twin of `GUARD_LUA`: why a change is refused, if it is.
    fn guard(&self, owner: &CartOwner, submission: Option<&str>) -> Option<Refused> {
        let key = owner.redis_key();
        if let Some(id) = submission.filter(|s| !s.is_empty()) {
            if self.submissions.get(&key).is_some_and(|s| s.contains(id)) {
                return Some(Refused::AlreadyApplied);
            }
        }
        self.retired.contains(&key).then_some(Refused::CartRetired)
    }

    fn remember(&mut self, owner: &CartOwner, submission: Option<&str>) {
        if let Some(id) = submission.filter(|s| !s.is_empty()) {
            self.submissions
                .entry(owner.redis_key())
                .or_default()
                .insert(id.to_owned());
        }
    }
}
