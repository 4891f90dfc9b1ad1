//! What the test binaries share, a file per topic:
//!
//! - `process`: free loopback ports, readiness polls, signals.
//! - `api`: every path into the storefront crate, and the seeded demo account.
//! - `redis`, `postgres`: real servers of the tests' own.
//! - `app`: the real app started in-process (`TestApp`), and what tests read
//!   back from its Redis and database.
//! - `browser`: HTTP clients with their own cookie jars, and the pages they get.
//! - `impair`: a paused or slowed Redis. `races`: cart adds racing a login.
//! - `cluster`: replica processes of the built binary behind real nginx.
//! - `ha`: Redis Sentinel and Redis Cluster. `chrome`, `axe`: a real browser.
//!
//! The in-process suites (tests/app/) use every topic this file declares. The
//! other binaries declare, in a `mod support { … }` of their own, only the
//! topics they use, so that nothing here needs a blanket `allow(dead_code)`.

pub mod api;
pub mod app;
pub mod browser;
pub mod checkout;
pub mod postgres;
pub mod process;
pub mod redis;
