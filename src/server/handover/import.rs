//! The new process's side: the store's entries taken back (every socket out of the queue,
//! then both entries removed from the store), the state checked and the channels restored
//! into the broker, all before serving; once serving, each connection resumed from its
//! record, and whatever cannot be (no state, a
//! state it cannot read, a record it does not understand, no room) closed with `goodbye`
//! `server_shutdown`.

use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::value::RawValue;
use tokio::task::JoinSet;
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

/// Tasks resuming the inherited connections side by side.
const RESUMERS: usize = 4;
/// Connections one resumer takes up before it lets other tasks (accepting) run.
const RESUME_SLICE: usize = 64;

/// What the previous process left in the store, taken out of it: the sockets and the
/// records of its state (or why there are none).
#[derive(Debug, Default)]
pub struct Inherited {
    /// The previous process left something in the store.
    found: bool,
    sockets: Vec<(usize, OwnedFd)>,
    records: Vec<Box<RawValue>>,
    signalled_at_ms: Option<u64>,
}

/// Takes what a previous process left in the store (`entries`, by name) out of it: every
/// socket out of the queue, then both entries removed, so that nothing of this handover can
/// reach another process; reads the state and restores its channels into the broker, so
/// that the resumed subscribers go on in their epochs even if a new client publishes first.
/// Cheap (a few dozen messages, one read of a sealed file): done before serving.
pub fn take_over(state: &AppState, entries: Vec<(String, OwnedFd)>) -> Inherited {
    if entries.is_empty() {
        return Inherited::default();
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
    for name in [CONNS, STATE] {
        if let Err(error) = systemd::remove_stored(name) {
            warn!(%error, name, "handover: cannot remove the entry from the store");
        }
    }
    let (records, signalled_at_ms) = match read_state(state, file) {
        Ok(read) => {
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
    Inherited {
        found: true,
        sockets,
        records,
        signalled_at_ms,
    }
}

/// The state file, read and checked.
fn read_state(
    #[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))] state: &AppState,
    file: Option<OwnedFd>,
) -> Result<state_file::State, String> {
    #[cfg(feature = "fault-injection")]
    if state.faults.handover_unreadable {
        return Err("FAULT_HANDOVER_UNREADABLE".to_owned());
    }
    match file {
        Some(fd) => state_file::read(fd).map_err(|e| e.to_string()),
        None => Err("no state in the store".to_owned()),
    }
}

/// Resumes every inherited connection (the process serves new ones meanwhile), in
/// [`RESUMERS`] tasks that yield between slices so that the accept loops keep their turn;
/// closes what cannot be resumed with `goodbye` `server_shutdown`; logs the take-over and
/// sets the handover gauges. Call once serving.
pub async fn resume(state: Arc<AppState>, inherited: Inherited) {
    if !inherited.found {
        return;
    }
    let serving_at = SystemTime::now();
    let Inherited {
        mut sockets,
        records,
        signalled_at_ms,
        ..
    } = inherited;
    let received = sockets.len();
    let records = Arc::new(records);
    let share = received.div_ceil(RESUMERS).max(1);
    let mut resumers = JoinSet::new();
    while !sockets.is_empty() {
        let part = sockets.split_off(sockets.len().saturating_sub(share));
        let (state, records) = (Arc::clone(&state), Arc::clone(&records));
        resumers.spawn(async move { resume_all(&state, part, &records).await });
    }
    let (mut resumed, mut closing) = (0, Vec::new());
    for (part_resumed, part_closing) in resumers.join_all().await {
        resumed += part_resumed;
        closing.extend(part_closing);
    }
    let handover = &state.metrics.handover;
    handover.count(HandoverOutcome::Resumed, resumed as u64);
    // Sockets lost on the way (they could not join the runtime) are closed already.
    let lost = received - resumed - closing.len();
    handover.count(HandoverOutcome::Unresumable, lost as u64);
    tokio::spawn(close_all(Arc::clone(&state), closing));
    let since =
        |at: SystemTime| signalled_at_ms.map(|signalled| unix_ms(at).saturating_sub(signalled));
    let (since_signal_ms, resumed_ms) = (since(serving_at), since(SystemTime::now()));
    if let (Some(serving), Some(all)) = (since_signal_ms, resumed_ms) {
        handover.seconds.set(serving as f64 / 1000.0);
        handover.resume_seconds.set(all as f64 / 1000.0);
    }
    info!(
        resumed,
        unresumable = received - resumed,
        since_signal_ms,
        resumed_ms,
        "handover: connections taken over from the previous process"
    );
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
async fn resume_all(
    state: &Arc<AppState>,
    sockets: Vec<(usize, OwnedFd)>,
    records: &[Box<RawValue>],
) -> (usize, Vec<TcpStream>) {
    let (mut resumed, mut closing, mut first_refusal) = (0, Vec::new(), None);
    for (n, (index, fd)) in sockets.into_iter().enumerate() {
        if n % RESUME_SLICE == 0 {
            tokio::task::yield_now().await;
        }
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
