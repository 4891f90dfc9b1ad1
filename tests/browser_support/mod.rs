//! What tests/browser.rs needs beyond tests/common: a real Chromium driven over
//! WebDriver (`chrome`), axe-core injected into pages (`axe`), and a small
//! three-replica cluster behind nginx (`cluster`).

pub mod axe;
pub mod chrome;
pub mod cluster;
