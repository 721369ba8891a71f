//! Log output: native journald records under systemd (so `journalctl CONNECTION_ID=alice`
//! works), JSON lines on stdout elsewhere, a readable format on a terminal; `LOG_LEVEL` is the
//! filter. Message payloads are never logged at info level, and tokens never at any level.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterFn, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where the logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Journald,
    Json,
    Terminal,
}

/// Whether stdout is the journal stream systemd connected (`JOURNAL_STREAM` is `DEV:INODE`
/// of that stream; a child whose output was redirected inherits the variable but not the
/// stream, so the pair must match).
fn stdout_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// tungstenite traces every frame with its payload, an `authenticate` frame's token
/// included: those records are dropped whatever `LOG_LEVEL` asks for.
fn no_frame_payloads() -> FilterFn {
    filter_fn(|meta| !(*meta.level() == Level::TRACE && meta.target().starts_with("tungstenite")))
}

/// Installs the global subscriber. `filter` was validated by the configuration.
pub fn init(filter: &str) -> Output {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(no_frame_payloads());
    if stdout_is_journal() {
        match tracing_journald::layer() {
            // Without the default `F_` prefix, fields keep their names upper-cased:
            // connection_id becomes CONNECTION_ID.
            Ok(journald) => {
                registry.with(journald.with_field_prefix(None)).init();
                return Output::Journald;
            }
            Err(e) => eprintln!("journald unavailable ({e}); logging JSON to stdout"),
        }
    }
    if std::io::stdout().is_terminal() {
        registry
            .with(tracing_subscriber::fmt::layer().compact())
            .init();
        Output::Terminal
    } else {
        let json = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false);
        registry.with(json).init();
        Output::Json
    }
}
