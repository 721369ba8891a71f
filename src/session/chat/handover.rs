//! A chat connection handed to the next process (docs/handover.md): parked between two
//! frames as its socket and a [`ConnectionRecord`] (with its subscriptions' positions and its
//! verified identity), and resumed from them on the other side by a new task that subscribes
//! again, fills its channels' gaps, and goes on where the old one stopped (no second
//! `connection_established`).

use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::Either;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tracing::{debug, warn};

use super::super::auth::Credentials;
use super::super::ending::{self, answered_into, goodbye_frame};
use super::super::subscriptions::Subscriptions;
use super::super::subscriptions::handover::SubscriptionRecord;
use super::{Ending, Session};
use crate::auth::{Identity, IdentityRecord};
use crate::metrics::HandoverOutcome;
use crate::protocol::{DisconnectReason, GoodbyeReason};
use crate::ratelimit::{RateLimiter, RateSnapshot};
use crate::state::AppState;
use crate::ws::{self, Detached, WebSocket};

/// What the next process needs to go on with a connection, beside its socket. Deadlines
/// travel as durations: the two processes share no clock.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ConnectionRecord {
    id: String,
    peer: IpAddr,
    /// The per-client key it was admitted under (the per-IP limit, the id's owner).
    client: IpAddr,
    /// Read and not parsed: the next frames, still masked.
    #[serde(with = "base64_bytes")]
    unparsed: Vec<u8>,
    /// Whole frames not written yet: they leave first.
    #[serde(with = "base64_bytes")]
    unwritten: Vec<u8>,
    open_for_ms: u64,
    /// Until the next heartbeat and ping.
    heartbeat_in_ms: u64,
    /// Since the last client message (the idle timeout).
    idle_for_ms: u64,
    /// Since bytes last arrived (a dead peer).
    silent_for_ms: u64,
    /// Since the ping still unanswered, if one is.
    ping_for_ms: Option<u64>,
    rate: RateSnapshot,
    /// Its channel subscriptions, with the last offset each delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    subscriptions: Vec<SubscriptionRecord>,
    /// The identity its token proved, when authentication is on: the next process goes on
    /// without the token, to the same expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<IdentityRecord>,
}

/// How long a connection in the middle of a frame may take to finish it before a handover
/// gives up on it (and it says goodbye).
const FRAME_WAIT: Duration = Duration::from_secs(1);

impl Session {
    /// Parks the connection for the next process, once the frame it is in the middle of has
    /// arrived (and been answered); gives the socket back, with how the connection must end,
    /// when it cannot go.
    pub(super) async fn park_or_end(
        &mut self,
        mut socket: WebSocket,
    ) -> Option<(WebSocket, Ending)> {
        if let Err(ending) = self.read_to_frame_boundary(&mut socket).await {
            return Some((socket, ending));
        }
        self.park(socket).map(|socket| (socket, Ending::Handover))
    }

    /// Reads and answers on until the frame reader stands between two frames, at most
    /// [`FRAME_WAIT`].
    async fn read_to_frame_boundary(&mut self, socket: &mut WebSocket) -> Result<(), Ending> {
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        let state = Arc::clone(&self.state);
        while !socket.is_between_frames() {
            let io = ws::next_io(socket, &mut self.outbox, answered_into(&state.metrics));
            let io = tokio::time::timeout_at(deadline, io)
                .await
                .map_err(|_| Ending::Handover)?;
            self.on_io(io)?;
        }
        // Every request read is answered here, before the channels are handed over: the
        // record has no place for a publish in flight.
        Box::pin(self.answer_all()).await
    }

    /// Parks the connection for the next process, or gives the socket back when it cannot
    /// go: in the middle of a frame or of a goodbye, still owing its token, or too late (the
    /// handover has taken the parked connections).
    fn park(&mut self, socket: WebSocket) -> Option<WebSocket> {
        let parkable = self.leaving.is_none()
            && !self.received_close
            && self.work.is_none()
            && !self.credentials.is_awaiting();
        if !parkable || !socket.is_between_frames() {
            return Some(socket);
        }
        let state = Arc::clone(&self.state);
        let Some(place) = state.parked.place() else {
            return Some(socket);
        };
        let detached = match ws::detach(socket, &mut self.outbox) {
            Err(error) => {
                // The socket could not leave the runtime: it is closed with it.
                warn!(connection_id = %self.id, %error, "handover: cannot detach the socket");
                self.report_closed(DisconnectReason::TRANSPORT_ERROR, None);
                return None;
            }
            Ok(detached) => detached,
        };
        let mut record = self.record(Instant::now(), detached.unparsed, detached.unwritten);
        if let Some(subscriptions) = self.subscriptions.as_mut() {
            record.subscriptions = subscriptions.park(&self.state);
        }
        let record = serde_json::to_vec(&record).expect("a record serialises");
        place.park(detached.stream, record);
        let metrics = &self.state.metrics;
        metrics.connections_active.dec();
        metrics.handover.count(HandoverOutcome::HandedOver, 1);
        debug!(connection_id = %self.id, peer = %self.peer, server_id = %self.state.config.server_id,
            "connection handed over");
        None
    }

    fn record(&mut self, now: Instant, unparsed: Vec<u8>, unwritten: Vec<u8>) -> ConnectionRecord {
        let ago = |then: Instant| millis(now.saturating_duration_since(then));
        ConnectionRecord {
            id: self.id.to_string(),
            peer: self.peer,
            client: self.registration.client(),
            unparsed,
            unwritten,
            open_for_ms: ago(self.opened),
            heartbeat_in_ms: millis(self.next_heartbeat.saturating_duration_since(now)),
            idle_for_ms: ago(self.last_message),
            silent_for_ms: ago(self.last_received),
            ping_for_ms: self.ping_sent.map(ago),
            rate: self.limiter.snapshot(now),
            subscriptions: Vec::new(),
            identity: self.credentials.identity().map(Identity::record),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

fn before(now: Instant, ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
}

/// Why a handed-over connection cannot be resumed.
#[derive(Debug)]
pub(crate) enum Unresumable {
    Record(serde_json::Error),
    AtCapacity,
    Socket(std::io::Error),
    /// Authentication is on here and the connection proved no identity (its process had
    /// authentication off): it must reconnect with a token.
    NoIdentity,
}

impl std::fmt::Display for Unresumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresumable::Record(e) => write!(f, "record not understood: {e}"),
            Unresumable::AtCapacity => f.write_str("over MAX_CONNECTIONS or the per-IP limit"),
            Unresumable::Socket(e) => write!(f, "socket unusable: {e}"),
            Unresumable::NoIdentity => f.write_str("authentication is on and it has no identity"),
        }
    }
}

/// A connection that cannot be resumed: why, and its socket when it is still open (to be
/// closed with [`close_unresumable`]).
pub(crate) type NotResumed = (Option<TcpStream>, Unresumable);

/// Resumes a connection handed over with `record` (JSON) on `stream`: the task to spawn, or
/// why not.
pub(crate) fn resume(
    state: &Arc<AppState>,
    stream: TcpStream,
    record: &str,
) -> Result<impl Future<Output = ()> + Send + use<>, NotResumed> {
    let mut record: ConnectionRecord = match serde_json::from_str(record) {
        Ok(record) => record,
        Err(e) => return Err((Some(stream), Unresumable::Record(e))),
    };
    let identity = match record.identity.take().map(Identity::from_record) {
        Some(Some(identity)) => Some(identity),
        Some(None) => return Err((Some(stream), Unresumable::Record(no_user()))),
        None if state.auth.is_some() => return Err((Some(stream), Unresumable::NoIdentity)),
        None => None,
    };
    let Ok(admission) = state.registry.admit(record.client) else {
        return Err((Some(stream), Unresumable::AtCapacity));
    };
    let now = Instant::now();
    let config = &state.config;
    let detached = Detached {
        stream,
        unparsed: record.unparsed,
        unwritten: record.unwritten,
    };
    let (socket, outbox) = ws::resume(
        detached,
        config.max_message_bytes,
        config.outbound_queue_bytes,
        now,
    )
    .map_err(|e| (None, Unresumable::Socket(e)))?;
    let registration = state.registry.register(admission);
    state.metrics.connections_active.inc();
    // The same expiry: `exp` is wall-clock time, which both processes share.
    let credentials = Credentials::at_upgrade(identity, state, now);
    let mut session = Session::new(
        Arc::clone(state),
        registration,
        record.id.into_boxed_str(),
        record.peer,
        credentials,
    );
    let client = session.registration.client();
    let owner = session
        .credentials
        .owner(client)
        .expect("not awaiting a token");
    // A fresh registry: the id is free, or held by an older socket of the same owner.
    let _ = session.registration.claim(&session.id, owner);
    session.outbox = outbox;
    session.limiter = RateLimiter::resume(config.rate_limit_msgs_per_sec, &record.rate, now);
    session.opened = before(now, record.open_for_ms);
    session.next_heartbeat = now + Duration::from_millis(record.heartbeat_in_ms);
    session.last_message = before(now, record.idle_for_ms);
    session.last_received = before(now, record.silent_for_ms);
    session.ping_sent = record.ping_for_ms.map(|ms| before(now, ms));
    let subscriptions = record.subscriptions;
    if subscriptions.is_empty() {
        return Ok(Either::Left(session.live(socket, Ok(()))));
    }
    // Boxed: only a subscriber pays for the resubscription's place in its task.
    Ok(Either::Right(Box::pin(async move {
        session.resubscribe(subscriptions).await;
        session.live(socket, Ok(())).await;
    })))
}

/// The error of an identity record without a user.
fn no_user() -> serde_json::Error {
    serde::de::Error::custom("an identity without a user")
}

impl Session {
    /// Subscribes again to what the connection was subscribed to in the previous process,
    /// before it reads anything (its unread bytes may unsubscribe).
    async fn resubscribe(&mut self, records: Vec<SubscriptionRecord>) {
        let mut subscriptions = Subscriptions::new(self.state.config.outbound_queue_bytes);
        subscriptions
            .resume(&self.state, &self.id, records, &mut self.outbox)
            .await;
        self.subscriptions = Some(subscriptions);
    }
}

/// Says `goodbye` `server_shutdown` and closes (1001) a handed-over socket that cannot be
/// resumed, so that its client reconnects as after a drain.
pub(crate) async fn close_unresumable(state: Arc<AppState>, stream: TcpStream) {
    let metrics = &state.metrics;
    let detached = Detached {
        stream,
        unparsed: Vec::new(),
        unwritten: Vec::new(),
    };
    let config = &state.config;
    let now = Instant::now();
    let Ok((mut socket, mut outbox)) = ws::resume(
        detached,
        config.max_message_bytes,
        config.outbound_queue_bytes,
        now,
    ) else {
        return;
    };
    let reason = GoodbyeReason::ServerShutdown;
    outbox.push_last(goodbye_frame(reason, metrics));
    let wait = state.drain_plan.close_wait;
    ending::close_for(
        &mut socket,
        &mut outbox,
        metrics,
        reason,
        reason.as_str(),
        wait,
    )
    .await;
}

/// Bytes as base64 in the record's JSON.
mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConnectionRecord {
        let mut limiter = RateLimiter::new(10, Instant::now());
        ConnectionRecord {
            id: "kept".into(),
            peer: "10.0.0.1".parse().unwrap(),
            client: "10.0.0.1".parse().unwrap(),
            unparsed: vec![0x81, 0x85, 1, 2, 3],
            unwritten: b"\x81\x02hi".to_vec(),
            open_for_ms: 60_000,
            heartbeat_in_ms: 1_500,
            idle_for_ms: 200,
            silent_for_ms: 100,
            ping_for_ms: Some(50),
            rate: limiter.snapshot(Instant::now()),
            subscriptions: Vec::new(),
            identity: None,
        }
    }

    /// The record in `json`, read from its text as the new process reads it.
    fn from_json(json: &serde_json::Value) -> serde_json::Result<ConnectionRecord> {
        serde_json::from_str(&json.to_string())
    }

    /// A subscriber's record, authenticated.
    fn subscriber() -> ConnectionRecord {
        let json = serde_json::json!({
            "subscriptions": [{"channel": "room:1", "epoch": "5eed1", "offset": 42}],
            "identity": {"sub": "alice", "exp": 1_900_000_000u64, "channels": ["room:*"]},
        });
        let mut record = serde_json::to_value(record()).unwrap();
        record
            .as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        from_json(&record).unwrap()
    }

    #[test]
    fn a_record_round_trips_with_its_bytes_as_base64() {
        let json = serde_json::to_string(&record()).unwrap();
        assert!(json.contains(r#""unwritten":"gQJoaQ==""#), "{json}");
        let back: ConnectionRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record());
    }

    #[test]
    fn a_plain_record_carries_no_subscriptions_or_identity() {
        let json = serde_json::to_value(record()).unwrap();
        assert!(json.get("subscriptions").is_none() && json.get("identity").is_none());
    }

    #[test]
    fn a_subscriber_record_carries_its_positions_and_identity() {
        let record = subscriber();
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["subscriptions"][0]["offset"], 42, "{json}");
        assert_eq!(json["subscriptions"][0]["epoch"], "5eed1");
        assert_eq!(json["identity"]["sub"], "alice");
        let back = from_json(&json).unwrap();
        assert_eq!(back, record);
        let identity = Identity::from_record(back.identity.unwrap()).unwrap();
        assert!(identity.may_access("room:2") && !identity.may_access("news"));
    }

    #[test]
    fn a_record_with_fields_this_build_does_not_know_is_refused() {
        let mut json: serde_json::Value = serde_json::to_value(record()).unwrap();
        json["frameBudget"] = serde_json::json!(3);
        let error = from_json(&json).unwrap_err().to_string();
        assert!(error.contains("unknown field `frameBudget`"), "{error}");
        let mut json = serde_json::to_value(subscriber()).unwrap();
        json["subscriptions"][0]["inbox"] = serde_json::json!([]);
        let error = from_json(&json).unwrap_err().to_string();
        assert!(error.contains("unknown field `inbox`"), "{error}");
    }
}
