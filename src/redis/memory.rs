//! The dev stand-in for the Redis integers that more than one store reads: in
//! memory mode the session index keeps each user's credential epoch here, under
//! the same key as in Redis, and the cart store checks a change's epoch guard
//! against it, as the cart scripts do in Redis. So both backends answer the same
//! way, and no caller asks which one it has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct MemoryCounters(Arc<Mutex<HashMap<String, i64>>>);

impl MemoryCounters {
    /// The integer under `key`; 0 when there is none (as a script's `GET or '0'`).
    pub fn get(&self, key: &str) -> i64 {
        self.0
            .lock()
            .expect("counters lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Sets `key` to `change(current)`, atomically; returns the new value.
    pub fn update(&self, key: &str, change: impl FnOnce(i64) -> i64) -> i64 {
        let mut counters = self.0.lock().expect("counters lock");
        let value = counters.entry(key.to_owned()).or_insert(0);
        *value = change(*value);
        *value
    }
}
