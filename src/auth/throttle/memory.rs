//! The throttle without Redis (dev mode): the same answers as the scripts in
//! `lua.rs`, in this process's memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Attempt, Group, Step, BUSY_POLL};

/// The same counters, leases and form states in this process (no Redis).
#[derive(Debug, Default)]
pub(super) struct MemoryState {
    /// Counter → (count, end of its window).
    pub(super) failures: HashMap<String, (u32, Instant)>,
    /// Counter → attempt nonce → end of its lease.
    leases: HashMap<String, HashMap<String, Instant>>,
    /// Form state key → (nonce or "spent", until).
    forms: HashMap<String, (String, Instant)>,
}

const SPENT: &str = "spent";

impl MemoryState {
    pub(super) fn purge(&mut self, now: Instant) {
        self.failures.retain(|_, (_, until)| *until > now);
        for leases in self.leases.values_mut() {
            leases.retain(|_, until| *until > now);
        }
        self.leases.retain(|_, leases| !leases.is_empty());
        self.forms.retain(|_, (_, until)| *until > now);
    }

    fn form_key(group: &Group, attempt: &Attempt) -> Option<String> {
        let form = attempt.form.as_deref()?;
        Some(format!("{}:form:{form}", group.base))
    }

    /// As `BEGIN_LUA`.
    pub(super) fn begin(
        &mut self,
        group: &Group,
        attempt: &Attempt,
        lease: Duration,
        now: Instant,
    ) -> Step {
        let form = Self::form_key(group, attempt);
        if let Some((state, until)) = form.as_ref().and_then(|key| self.forms.get(key)) {
            if state == SPENT {
                return Step::Spent;
            }
            if *state != attempt.nonce {
                return Step::Busy((*until - now).max(Duration::from_millis(1)));
            }
        }
        let mut busy = None;
        for (key, limit) in group.keys.iter().zip(&group.limits) {
            let (failed, window_end) = self.failures.get(key).copied().unwrap_or((0, now));
            if failed >= *limit {
                return Step::Refused((window_end - now).max(Duration::from_millis(1)));
            }
            let leases = self.leases.get(key);
            let others = leases.map_or(0, |l| l.keys().filter(|n| **n != attempt.nonce).count());
            if failed as usize + others >= *limit as usize {
                let first = leases.and_then(|l| l.values().min()).copied();
                let wait = first.map_or(BUSY_POLL, |first| first - now);
                busy = busy.max(Some(wait.max(Duration::from_millis(1))));
            }
        }
        if let Some(wait) = busy {
            return Step::Busy(wait);
        }
        for key in &group.keys {
            self.leases
                .entry(key.clone())
                .or_default()
                .insert(attempt.nonce.clone(), now + lease);
        }
        if let Some(form) = form {
            self.forms
                .insert(form, (attempt.nonce.clone(), now + lease));
        }
        Step::Go
    }

    /// As `FINISH_LUA`.
    pub(super) fn finish(
        &mut self,
        group: &Group,
        attempt: &Attempt,
        outcome: &str,
        window_end: Instant,
    ) {
        for (i, key) in group.keys.iter().enumerate() {
            if let Some(leases) = self.leases.get_mut(key) {
                leases.remove(&attempt.nonce);
            }
            if outcome == "failed" {
                self.failures
                    .entry(key.clone())
                    .or_insert((0, window_end))
                    .0 += 1;
            } else if outcome == "succeeded" && i == 0 && group.clear_first_on_success {
                self.failures.remove(key);
            }
        }
        let Some(form) = Self::form_key(group, attempt) else {
            return;
        };
        if outcome == "failed" {
            self.forms.insert(form, (SPENT.to_owned(), window_end));
        } else if self
            .forms
            .get(&form)
            .is_some_and(|(s, _)| *s == attempt.nonce)
        {
            self.forms.remove(&form);
        }
    }
}
