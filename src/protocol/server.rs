//! Server messages: every message the server sends, its serialisation (one allocation of
//! exactly its length), and the answers to requests, errors and goodbyes.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use super::client::{ClientMessage, ProtocolError};
use super::names::{ErrorCode, GoodbyeReason, ServerType, UnsubscribeReason};

/// How much of its serialisation buffer a thread keeps between messages.
const SCRATCH_KEPT_BYTES: usize = 16 * 1024;

/// Milliseconds since the Unix epoch, for `ts`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every message the server sends.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage<'a> {
    ConnectionEstablished {
        connection_id: &'a str,
        server_id: &'a str,
        heartbeat_interval_ms: u64,
        ts: u64,
    },
    Heartbeat {
        ts: u64,
    },
    MessageResponse {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        data: &'a RawValue,
        ts: u64,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        ts: u64,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        ts: u64,
    },
    Goodbye {
        reason: GoodbyeReason,
        reconnect: bool,
        ts: u64,
    },
    Subscribed {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        epoch: &'a str,
        offset: u64,
        /// Only when the request had `recover`.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// Only when the request had `recover`; empty when not recovered.
        #[serde(skip_serializing_if = "Option::is_none")]
        publications: Option<&'a [PublicationItem<'a>]>,
        ts: u64,
    },
    Unsubscribed {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// Only when the server ended the subscription itself.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<UnsubscribeReason>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resubscribe: Option<bool>,
        ts: u64,
    },
    Published {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        offset: u64,
        epoch: &'a str,
        ts: u64,
    },
    Publication {
        channel: &'a str,
        offset: u64,
        data: &'a RawValue,
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        ts: u64,
    },
}

/// One recovered publication in `subscribed.publications`.
#[derive(Debug, Serialize)]
pub struct PublicationItem<'a> {
    pub offset: u64,
    pub data: &'a RawValue,
    pub from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
}

impl ServerMessage<'_> {
    /// The type of the message, as counted (the same name as its `type` field).
    pub fn kind(&self) -> ServerType {
        match self {
            ServerMessage::ConnectionEstablished { .. } => ServerType::ConnectionEstablished,
            ServerMessage::Heartbeat { .. } => ServerType::Heartbeat,
            ServerMessage::MessageResponse { .. } => ServerType::MessageResponse,
            ServerMessage::Pong { .. } => ServerType::Pong,
            ServerMessage::Error { .. } => ServerType::Error,
            ServerMessage::Goodbye { .. } => ServerType::Goodbye,
            ServerMessage::Subscribed { .. } => ServerType::Subscribed,
            ServerMessage::Unsubscribed { .. } => ServerType::Unsubscribed,
            ServerMessage::Published { .. } => ServerType::Published,
            ServerMessage::Publication { .. } => ServerType::Publication,
        }
    }

    /// The JSON text of the message, in an allocation of exactly its length.
    ///
    /// It is written into a reusable per-thread buffer and copied out: serialising into a
    /// fresh `String` reallocates as it grows and leaves spare capacity, and a `String` with
    /// spare capacity costs a second allocation when it becomes the frame's `Bytes`.
    pub fn to_json(&self) -> String {
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            // Serialising these types cannot fail: every field is a string, number, bool or
            // already-valid raw JSON.
            serde_json::to_writer(&mut *scratch, self).expect("server messages always serialise");
            let json = std::str::from_utf8(scratch)
                .expect("serde_json writes UTF-8")
                .to_owned();
            // One huge echo must not pin its size to the thread for good.
            scratch.shrink_to(SCRATCH_KEPT_BYTES);
            json
        })
    }

    /// The answer to a valid v1 client message; `None` for the channel requests, which the
    /// channels answer.
    pub fn answer<'a>(request: &'a ClientMessage<'a>, ts: u64) -> Option<ServerMessage<'a>> {
        match request {
            ClientMessage::Message { id, data } => Some(ServerMessage::MessageResponse {
                id: id.as_deref(),
                data,
                ts,
            }),
            ClientMessage::Ping { id } => Some(ServerMessage::Pong {
                id: id.as_deref(),
                ts,
            }),
            ClientMessage::Subscribe { .. }
            | ClientMessage::Unsubscribe { .. }
            | ClientMessage::Publish { .. } => None,
        }
    }

    /// The `error` message for a request that could not be served.
    pub fn error(error: &ProtocolError, ts: u64) -> ServerMessage<'_> {
        ServerMessage::Error {
            code: error.code,
            message: &error.message,
            id: error.id.as_deref(),
            ts,
        }
    }

    /// The `goodbye` message for a reason.
    pub fn goodbye(reason: GoodbyeReason, ts: u64) -> ServerMessage<'static> {
        ServerMessage::Goodbye {
            reason,
            reconnect: reason.reconnect(),
            ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::client::parse_client_frame;

    #[test]
    fn server_messages_serialise_as_the_spec_says() {
        let m = ServerMessage::ConnectionEstablished {
            connection_id: "a",
            server_id: "s",
            heartbeat_interval_ms: 30000,
            ts: 5,
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"connection_established","connectionId":"a","serverId":"s","heartbeatIntervalMs":30000,"ts":5}"#
        );
        let req = parse_client_frame(r#"{"type":"message","data":{"z":1,"a":2}}"#, 1024).unwrap();
        assert_eq!(
            ServerMessage::answer(&req, 1).unwrap().to_json(),
            r#"{"type":"message_response","data":{"z":1,"a":2},"ts":1}"#
        );
        assert_eq!(
            ServerMessage::goodbye(GoodbyeReason::ServerShutdown, 2).to_json(),
            r#"{"type":"goodbye","reason":"server_shutdown","reconnect":true,"ts":2}"#
        );
        let err = ProtocolError::new(ErrorCode::RateLimited, "slow down", Some("q"));
        assert_eq!(
            ServerMessage::error(&err, 3).to_json(),
            r#"{"type":"error","code":"rate_limited","message":"slow down","id":"q","ts":3}"#
        );
    }

    #[test]
    fn channel_messages_serialise_as_the_contract_says() {
        let data = RawValue::from_string(r#"{"text":"hi"}"#.into()).unwrap();
        let items = [PublicationItem {
            offset: 43,
            data: &data,
            from: "bob",
            user: None,
        }];
        let subscribed = ServerMessage::Subscribed {
            channel: "room:1",
            id: Some("s2"),
            epoch: "k3J9",
            offset: 43,
            recovered: Some(true),
            publications: Some(&items),
            ts: 9,
        };
        assert_eq!(
            subscribed.to_json(),
            r#"{"type":"subscribed","channel":"room:1","id":"s2","epoch":"k3J9","offset":43,"recovered":true,"publications":[{"offset":43,"data":{"text":"hi"},"from":"bob"}],"ts":9}"#
        );
        let ended = ServerMessage::Unsubscribed {
            channel: "room:1",
            id: None,
            reason: Some(UnsubscribeReason::InsufficientState),
            resubscribe: Some(true),
            ts: 2,
        };
        assert_eq!(
            ended.to_json(),
            r#"{"type":"unsubscribed","channel":"room:1","reason":"insufficient_state","resubscribe":true,"ts":2}"#
        );
        let publication = ServerMessage::Publication {
            channel: "room:1",
            offset: 42,
            data: &data,
            from: "alice",
            user: Some("u1"),
            ts: 3,
        };
        assert_eq!(
            publication.to_json(),
            r#"{"type":"publication","channel":"room:1","offset":42,"data":{"text":"hi"},"from":"alice","user":"u1","ts":3}"#
        );
    }

    #[test]
    fn serialised_messages_have_no_spare_capacity() {
        let data = format!(r#"{{"type":"message","data":"{}"}}"#, "x".repeat(20_000));
        for text in [
            r#"{"type":"message","data":"short"}"#,
            &data,
            r#"{"type":"ping"}"#,
        ] {
            let json = ServerMessage::answer(&parse_client_frame(text, 65536).unwrap(), 1)
                .unwrap()
                .to_json();
            assert_eq!(json.capacity(), json.len(), "{json:.40}");
        }
    }

    #[test]
    fn the_counted_type_is_the_type_on_the_wire() {
        let request = parse_client_frame(r#"{"type":"ping"}"#, 1024).unwrap();
        let error = ProtocolError::too_large(1);
        let messages = [
            ServerMessage::ConnectionEstablished {
                connection_id: "a",
                server_id: "s",
                heartbeat_interval_ms: 1,
                ts: 1,
            },
            ServerMessage::Heartbeat { ts: 1 },
            ServerMessage::MessageResponse {
                id: None,
                data: &RawValue::from_string("1".into()).unwrap(),
                ts: 1,
            },
            ServerMessage::answer(&request, 1).unwrap(),
            ServerMessage::error(&error, 1),
            ServerMessage::goodbye(GoodbyeReason::Replaced, 1),
            ServerMessage::Subscribed {
                channel: "c",
                id: None,
                epoch: "e",
                offset: 0,
                recovered: None,
                publications: None,
                ts: 1,
            },
            ServerMessage::Unsubscribed {
                channel: "c",
                id: None,
                reason: None,
                resubscribe: None,
                ts: 1,
            },
            ServerMessage::Published {
                channel: "c",
                id: None,
                offset: 1,
                epoch: "e",
                ts: 1,
            },
            ServerMessage::Publication {
                channel: "c",
                offset: 1,
                data: &RawValue::from_string("1".into()).unwrap(),
                from: "a",
                user: None,
                ts: 1,
            },
        ];
        for message in &messages {
            let json: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
            assert_eq!(json["type"], message.kind().as_str());
        }
        assert_eq!(messages.len(), ServerType::ALL.len());
    }
}
