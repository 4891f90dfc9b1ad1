//! storefront: a server-rendered shop whose sessions and carts live in Redis, so
//! that any replica behind a load balancer can serve any request.
//!
//! `main.rs` only parses the command line; everything is here, so tests can start
//! the real application in-process ([`Application::build`]) on a free port.
//!
//! Dependencies point one way: `main` → `app` (build and run) → `router` → the
//! feature pages (`catalog`, `cart`, `auth`, `account`, `orders`, each a
//! `pages.rs`) → the web kit (`web`) → `state` → the session and feature stores
//! (`session`, each feature's `mod.rs`/`store.rs`) → `domain`, `error`, `redis`,
//! `db`, `config`.

pub mod account;
pub mod app;
pub mod assets;
pub mod auth;
pub mod cart;
pub mod catalog;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod memory;
pub mod orders;
pub mod redis;
pub mod router;
pub mod session;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod token;
pub mod web;

pub use app::Application;
pub use redis::connect as connect_redis;
