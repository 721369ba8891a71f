//! The old process's side: every connection parked, publishing stopped and the channels
//! taken, the sockets queued into one store entry, the state written and sealed into another,
//! and systemd's word that it read both.
//! Bounded by [`HANDOVER_BOUND`] plus a close wait, whatever the drain window.

use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::value::RawValue;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::super::sockets::{HANDOVER_CONNS as CONNS, HANDOVER_STATE as STATE};
use super::super::systemd;
use super::queue;
use super::state_file::{self, State};
use crate::channels::ChannelsSnapshot;
use crate::lifecycle::unix_ms;
use crate::metrics::HandoverOutcome;
use crate::registry::Command;
use crate::session::chat;
use crate::state::AppState;

/// How long connections have to park (or to say goodbye when they cannot).
const HANDOVER_BOUND: Duration = Duration::from_secs(3);
/// The longest the process accepts on while the connections park (a steady stream of new
/// ones could otherwise keep it from ever finding all parked).
const ACCEPT_BOUND: Duration = Duration::from_millis(1500);
/// How long a connection accepted before the process stopped accepting may take to send its
/// request: a client sends it a round trip after connecting, and a silent one (a probe, a
/// slowloris) must not keep every new client waiting in the socket's queue for longer.
const ANSWER_BOUND: Duration = Duration::from_millis(1000);
/// How long systemd has to read the store messages.
const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);
/// Fewest entries the store must take: the queue and the state.
const STORE_ENTRIES: u32 = 2;

/// Why this process cannot hand over, if it cannot: no notify socket, or no store.
pub fn unavailable() -> Option<String> {
    if !systemd::is_notifying() {
        return Some("no NOTIFY_SOCKET: not run by systemd".to_owned());
    }
    // systemd >= 254 sets FDSTORE to FileDescriptorStoreMax=; our units set it for older ones.
    let store = std::env::var("FDSTORE").ok();
    match store.as_deref().map(str::parse::<u32>) {
        Some(Ok(n)) if n >= STORE_ENTRIES => None,
        Some(_) => Some(format!(
            "FDSTORE={:?}: the store must take {STORE_ENTRIES} entries (FileDescriptorStoreMax=)",
            store.unwrap_or_default()
        )),
        None => Some("FDSTORE is not set: the unit has no FileDescriptorStoreMax=".to_owned()),
    }
}

/// Hands every connection to the next process; returns how many went. Connections that
/// cannot go say goodbye and close. The process accepts on while the open connections park
/// (each new one parks as it opens): `stop_accepting` is called only once they have, so that
/// new clients wait in systemd's socket queue for as short a time as can be.
pub async fn hand_over(
    state: &Arc<AppState>,
    signalled_at: SystemTime,
    stop_accepting: impl FnOnce(),
    unanswered: impl Fn() -> usize,
) -> usize {
    let started = Instant::now();
    let open = state.registry.len();
    state.parked.collect();
    for control in state.registry.snapshot() {
        control.send(Command::Handover);
    }
    wait_until(started + ACCEPT_BOUND, || state.registry.is_empty()).await;
    stop_accepting();
    let accepted_for_ms = started.elapsed().as_millis() as u64;
    // Connections already accepted get their answer before HTTP stops (stopping would close
    // them unanswered): an upgrade under way parks (or, opened now, says goodbye) too.
    let bound = started + HANDOVER_BOUND;
    wait_until(bound.min(Instant::now() + ANSWER_BOUND), || {
        unanswered() == 0
    })
    .await;
    wait_until(bound, || state.registry.admitted() == 0).await;
    let parked = state.parked.take();
    let parked_ms = started.elapsed().as_millis() as u64;
    // After the parking: every publication a parked connection was answered is in it, and
    // none can follow (a connection still open gets `broker_unavailable`).
    let channels = state.channels.broker.hand_over();
    let handed = match store(&parked, signalled_at, channels) {
        Ok(handed) => handed,
        Err(error) => {
            warn!(%error, connections = parked.len(), "handover failed: closing the parked connections");
            0
        }
    };
    let (handed_over, rest) = split(parked, handed);
    drop(handed_over); // systemd holds them now
    let closed = rest.len();
    close_all(Arc::clone(state), rest).await;
    info!(
        open,
        handed_over = handed,
        closed,
        accepted_for_ms,
        parked_ms,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "handover: connections left in the file descriptor store"
    );
    handed
}

/// Waits until `done` (every connection parked or closed), or `deadline`.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Queues the parked sockets and stores the queue and the state; returns how many are in
/// the store (the first ones of `parked`). Nothing is stored on an error before the queue.
fn store(
    parked: &[(TcpStream, Vec<u8>)],
    signalled_at: SystemTime,
    channels: Option<ChannelsSnapshot>,
) -> std::io::Result<usize> {
    if parked.is_empty() {
        return Ok(0);
    }
    let fds: Vec<BorrowedFd<'_>> = parked.iter().map(|(stream, _)| stream.as_fd()).collect();
    let (queue, queued, refused) = queue::fill(&fds)?;
    if let Some(error) = refused {
        warn!(%error, queued, parked = parked.len(), "handover: the queue took only some sockets");
    }
    let connections = parked[..queued]
        .iter()
        .map(|(_, record)| raw(record))
        .collect::<std::io::Result<Vec<_>>>()?;
    let memfd = state_file::write(&State {
        signalled_at_ms: unix_ms(signalled_at),
        connections,
        channels,
    })?;
    // The queue first: a crash between the two leaves sockets without state, which the next
    // process closes; the state is complete and sealed before it is stored.
    systemd::store_fd(CONNS, queue.as_fd())?;
    if let Err(error) = systemd::store_fd(STATE, memfd.as_fd()) {
        warn!(%error, "handover: the state could not be stored: the next process closes the connections");
    }
    // Once stored, the sockets are the next process's, whatever the barrier says.
    if let Err(error) = systemd::barrier(BARRIER_TIMEOUT) {
        warn!(%error, "handover: systemd may not have read the store messages");
    }
    Ok(queued)
}

fn raw(record: &[u8]) -> std::io::Result<Box<RawValue>> {
    let text = String::from_utf8(record.to_vec()).map_err(std::io::Error::other)?;
    RawValue::from_string(text).map_err(std::io::Error::other)
}

fn split(
    mut parked: Vec<(TcpStream, Vec<u8>)>,
    handed: usize,
) -> (Vec<(TcpStream, Vec<u8>)>, Vec<TcpStream>) {
    let rest = parked.split_off(handed.min(parked.len()));
    (parked, rest.into_iter().map(|(stream, _)| stream).collect())
}

/// Says goodbye on every socket in `streams` and closes them, at once, within a close wait.
pub(super) async fn close_all(state: Arc<AppState>, streams: Vec<TcpStream>) {
    if streams.is_empty() {
        return;
    }
    state
        .metrics
        .handover
        .count(HandoverOutcome::Unresumable, streams.len() as u64);
    let mut closing = JoinSet::new();
    for stream in streams {
        closing.spawn(chat::handover::close_unresumable(
            Arc::clone(&state),
            stream,
        ));
    }
    let wait = state.drain_plan.close_wait + Duration::from_millis(500);
    let _ = tokio::time::timeout(wait, closing.join_all()).await;
}
