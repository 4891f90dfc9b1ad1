//! What tests/browser.rs needs beyond tests/common: a real Chromium driven over
//! WebDriver (`chrome`) and axe-core injected into pages (`axe`).

pub mod axe;
pub mod chrome;
