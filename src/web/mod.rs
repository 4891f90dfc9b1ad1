//! The web kit every page uses: the page extractors and layout, the notes one
//! request's layers share, the error pages and middleware, form parsing, the
//! client's address, health checks, the session inspector and trace context.

pub mod agent;
pub mod client_ip;
pub mod compress;
pub mod edge;
pub mod form;
pub mod format;
pub mod health;
pub mod inspector;
pub mod layout;
pub mod metrics;
pub mod middleware;
pub mod notes;
pub mod notice;
pub mod page;
pub mod trace;
