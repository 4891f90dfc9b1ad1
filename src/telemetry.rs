//! Logs: human-readable by default, JSON lines with `LOG_FORMAT=json`. Colours
//! only on a terminal: a log file or a pipe gets plain text that `grep` finds
//! (`grep trace_id=<id>`), and `NO_COLOR` turns them off everywhere.

use std::io::IsTerminal;

pub mod metrics;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info,sqlx=warn,fred=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_ansi(false).with_current_span(true))
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_ansi(colours()))
            .try_init(),
    };
}

/// Colour codes only for a person watching a terminal (https://no-color.org).
fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
