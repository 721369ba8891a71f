//! The new process's side: the store's entries taken back (every socket out of the queue,
//! then both entries removed from the store), the state checked, the channels restored into
//! the broker, each connection resumed from its record, and whatever cannot be (no state, a
//! state it cannot read, a record it does not understand, no room) closed with `goodbye`
//! `server_shutdown`.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::value::RawValue;
use tracing::{info, warn};

use super::super::sockets::{HANDOVER_CONNS as CONNS, HANDOVER_STATE as STATE};
use super::super::systemd;
use super::export::close_all;
use super::queue;
use super::state_file;
use crate::channels::ChannelsSnapshot;
use crate::lifecycle::unix_ms;
use crate::metrics::HandoverOutcome;
use crate::session::chat;
use crate::state::AppState;

/// What a take-over found, to report once the process serves.
#[derive(Debug, Default)]
pub struct TakenOver {
    /// The previous process left something in the store.
    found: bool,
    /// When it was told to hand over, if its state could be read.
    signalled_at_ms: Option<u64>,
    resumed: usize,
    unresumable: usize,
}

impl TakenOver {
    /// Logs the take-over and sets `websocket_handover_seconds`: call once serving.
    pub fn report(&self, state: &AppState) {
        if !self.found {
            return;
        }
        let now_ms = unix_ms(SystemTime::now());
        let since_signal_ms = self
            .signalled_at_ms
            .map(|signalled| now_ms.saturating_sub(signalled));
        if let Some(ms) = since_signal_ms {
            state.metrics.handover.seconds.set(ms as f64 / 1000.0);
        }
        info!(
            resumed = self.resumed,
            unresumable = self.unresumable,
            since_signal_ms,
            "handover: connections taken over from the previous process"
        );
    }
}

/// Takes over what a previous process left in the store (`entries`, by name), spawning a
/// task per resumed connection.
pub fn take_over(state: &Arc<AppState>, entries: Vec<(String, OwnedFd)>) -> TakenOver {
    if entries.is_empty() {
        return TakenOver::default();
    }
    let (mut conns, mut file) = (None, None);
    for (name, fd) in entries {
        match name.as_str() {
            CONNS => conns = Some(fd),
            STATE => file = Some(fd),
            _ => {}
        }
    }
    let sockets = match conns.as_ref().map(queue::drain) {
        Some(Ok(sockets)) => sockets,
        Some(Err(error)) => {
            warn!(%error, "handover: cannot take the sockets out of the queue");
            Vec::new()
        }
        None => Vec::new(),
    };
    drop(conns);
    // The sockets are ours now: nothing of this handover may reach another process.
    for name in [CONNS, STATE] {
        if let Err(error) = systemd::remove_stored(name) {
            warn!(%error, name, "handover: cannot remove the entry from the store");
        }
    }
    let read = match file {
        Some(fd) => state_file::read(fd).map_err(|e| e.to_string()),
        None => Err("no state in the store".to_owned()),
    };
    #[cfg(feature = "fault-injection")]
    let read = if state.faults.handover_unreadable {
        Err("FAULT_HANDOVER_UNREADABLE".to_owned())
    } else {
        read
    };
    let (records, signalled_at_ms) = match read {
        Ok(read) => {
            // Before any subscriber resumes: they go on in these channels' epochs.
            if let Some(channels) = read.channels {
                restore_channels(state, channels);
            }
            (read.connections, Some(read.signalled_at_ms))
        }
        Err(why) => {
            warn!(%why, sockets = sockets.len(), "handover: state unreadable: closing every handed-over connection");
            (Vec::new(), None)
        }
    };
    let received = sockets.len();
    let (resumed, closing) = resume_all(state, sockets, &records);
    let handover = &state.metrics.handover;
    handover.count(HandoverOutcome::Resumed, resumed as u64);
    // Sockets lost on the way (they could not join the runtime) are closed already.
    let lost = received - resumed - closing.len();
    handover.count(HandoverOutcome::Unresumable, lost as u64);
    tokio::spawn(close_all(Arc::clone(state), closing));
    TakenOver {
        found: true,
        signalled_at_ms,
        resumed,
        unresumable: received - resumed,
    }
}

/// Takes the channels of the previous process into the broker.
fn restore_channels(state: &AppState, channels: ChannelsSnapshot) {
    let restored = state.channels.broker.take_over(channels);
    info!(
        channels = restored.channels,
        publications = restored.publications,
        refused = restored.refused,
        "handover: channels taken over from the previous process"
    );
}

/// Resumes each socket from its record; returns how many were, and the sockets to close.
fn resume_all(
    state: &Arc<AppState>,
    sockets: Vec<(usize, OwnedFd)>,
    records: &[Box<RawValue>],
) -> (usize, Vec<TcpStream>) {
    let (mut resumed, mut closing, mut first_refusal) = (0, Vec::new(), None);
    for (index, fd) in sockets {
        let stream = TcpStream::from(fd);
        let Some(record) = records.get(index) else {
            closing.push(stream);
            continue;
        };
        match chat::handover::resume(state, stream, record.get()) {
            Ok(task) => {
                tokio::spawn(task);
                resumed += 1;
            }
            Err((stream, why)) => {
                first_refusal.get_or_insert_with(|| why.to_string());
                closing.extend(stream);
            }
        }
    }
    if let Some(why) = first_refusal {
        warn!(%why, "handover: some connections cannot be resumed (the first reason)");
    }
    (resumed, closing)
}
