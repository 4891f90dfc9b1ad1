//! The suites that start the app in-process, in one test binary. Each test
//! starts its own world (a real redis-server, a fresh SQLite file or a fresh
//! database on this binary's Postgres, the real app on port 0) and acts as a
//! user would. The suites that start processes of their own (cluster, faults,
//! sentinel, redis_cluster, multihost, browser) are test binaries of their own.

#[path = "../support/mod.rs"]
mod support;

mod accounts;
mod checkout;
mod concurrency;
mod hardening;
mod messages;
mod postgres;
mod redis_outage;
mod shop;
