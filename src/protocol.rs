//! Wire protocol v1 (docs/protocol.md): the client messages and their validation into protocol
//! error codes, the server messages and their serialisation, and the goodbye reasons with their
//! close codes. Pure functions, no I/O.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest `id` a client may send, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest `connectionId`, in characters.
pub const MAX_CONNECTION_ID_CHARS: usize = 64;
/// How much of an unknown `type` is quoted back in the error message.
const MAX_QUOTED_TYPE_CHARS: usize = 64;
/// How much of its serialisation buffer a thread keeps between messages.
const SCRATCH_KEPT_BYTES: usize = 16 * 1024;

/// Error codes of `error` messages (and of `websocket_errors_total{code}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidMessage,
    UnknownType,
    MessageTooLarge,
    RateLimited,
    UnsupportedFrame,
    /// A WebSocket protocol violation (bad framing, invalid UTF-8): counted, never sent as an
    /// `error` message because the connection is closed with 1002 or 1007 instead.
    WebsocketProtocol,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidMessage,
        ErrorCode::UnknownType,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UnsupportedFrame,
        ErrorCode::WebsocketProtocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnsupportedFrame => "unsupported_frame",
            ErrorCode::WebsocketProtocol => "websocket_protocol",
        }
    }
}

/// Why the server says `goodbye`; each reason has its close code and reconnect advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoodbyeReason {
    ServerShutdown,
    IdleTimeout,
    Replaced,
    PolicyViolation,
    MessageTooLarge,
    SlowConsumer,
}

impl GoodbyeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GoodbyeReason::ServerShutdown => "server_shutdown",
            GoodbyeReason::IdleTimeout => "idle_timeout",
            GoodbyeReason::Replaced => "replaced",
            GoodbyeReason::PolicyViolation => "policy_violation",
            GoodbyeReason::MessageTooLarge => "message_too_large",
            GoodbyeReason::SlowConsumer => "slow_consumer",
        }
    }

    /// The WebSocket close code sent after the goodbye.
    pub fn close_code(self) -> u16 {
        match self {
            GoodbyeReason::ServerShutdown => 1001,
            GoodbyeReason::IdleTimeout | GoodbyeReason::Replaced => 1000,
            GoodbyeReason::PolicyViolation => 1008,
            GoodbyeReason::MessageTooLarge => 1009,
            // "Try Again Later": the client did nothing wrong on purpose, its link was too slow.
            GoodbyeReason::SlowConsumer => 1013,
        }
    }

    /// Whether the client should reconnect (to this or another server).
    pub fn reconnect(self) -> bool {
        matches!(
            self,
            GoodbyeReason::ServerShutdown | GoodbyeReason::SlowConsumer
        )
    }
}

/// A valid client message. `data` borrows the request's raw JSON so that it is answered
/// byte for byte unchanged.
#[derive(Debug, Clone)]
pub enum ClientMessage<'a> {
    Message {
        id: Option<Cow<'a, str>>,
        data: &'a RawValue,
    },
    Ping {
        id: Option<Cow<'a, str>>,
    },
}

impl ClientMessage<'_> {
    /// The metrics label of the message type.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Message { .. } => "message",
            ClientMessage::Ping { .. } => "ping",
        }
    }
}

/// A request that cannot be served: the `error` message to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    /// The request's `id`, when it was a valid one.
    pub id: Option<String>,
}

impl ProtocolError {
    fn new(code: ErrorCode, message: impl Into<String>, id: Option<&str>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            id: id.map(str::to_owned),
        }
    }

    /// An `error` for a message larger than `max_bytes`.
    pub fn too_large(max_bytes: usize) -> Self {
        Self::new(
            ErrorCode::MessageTooLarge,
            format!("message exceeds {max_bytes} bytes"),
            None,
        )
    }
}

/// The top-level fields the protocol knows; the others are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: StringField<'a>,
    #[serde(borrow, default)]
    id: StringField<'a>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// A field that must hold a string, read in the same pass as the envelope. The variants are
/// tried in order: the common case, a string, first.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum StringField<'a> {
    /// Unescaped; borrowed from the frame when it has no escapes.
    Text(#[serde(borrow)] Cow<'a, str>),
    /// Missing, or `null`, which the protocol treats as missing.
    #[default]
    Absent,
    /// Any other JSON value.
    NotText(IgnoredAny),
}

impl<'a> StringField<'a> {
    /// `Ok(None)` when absent, `Err(())` when not a string.
    fn into_text(self) -> Result<Option<Cow<'a, str>>, ()> {
        match self {
            StringField::Absent => Ok(None),
            StringField::Text(text) => Ok(Some(text)),
            StringField::NotText(_) => Err(()),
        }
    }
}

/// The `data` of a `message` that has none.
static NULL: LazyLock<Box<RawValue>> =
    LazyLock::new(|| RawValue::from_string("null".into()).expect("null is JSON"));

/// Parses and validates one text frame of at most `max_bytes` bytes.
pub fn parse_client_frame(
    text: &str,
    max_bytes: usize,
) -> Result<ClientMessage<'_>, ProtocolError> {
    if text.len() > max_bytes {
        return Err(ProtocolError::too_large(max_bytes));
    }
    // Only an object is a request; serde would also read a struct from an array.
    let is_object = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{');
    let envelope = if is_object {
        serde_json::from_str::<Envelope<'_>>(text).ok()
    } else {
        None
    };
    let Some(envelope) = envelope else {
        // The rare path: tell broken JSON from valid JSON of the wrong shape (an array, a
        // duplicated field) by checking the syntax of the whole text.
        return Err(if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            ProtocolError::new(
                ErrorCode::InvalidMessage,
                "message must be a JSON object with unique keys",
                None,
            )
        } else {
            ProtocolError::new(ErrorCode::InvalidJson, "message is not valid JSON", None)
        });
    };
    let id = envelope
        .id
        .into_text()
        .map_err(|()| ProtocolError::new(ErrorCode::InvalidMessage, "id must be a string", None))?;
    if let Some(id) = &id
        && id.chars().count() > MAX_ID_CHARS
    {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("id is longer than {MAX_ID_CHARS} characters"),
            None,
        ));
    }
    let Ok(Some(kind)) = envelope.kind.into_text() else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            "type must be a string",
            id.as_deref(),
        ));
    };
    match kind.as_ref() {
        "message" => Ok(ClientMessage::Message {
            id,
            data: envelope.data.unwrap_or(&NULL),
        }),
        "ping" => Ok(ClientMessage::Ping { id }),
        other => {
            let quoted: String = other.chars().take(MAX_QUOTED_TYPE_CHARS).collect();
            Err(ProtocolError::new(
                ErrorCode::UnknownType,
                format!("unknown message type '{quoted}'"),
                id.as_deref(),
            ))
        }
    }
}

/// Whether a path segment is a valid `connectionId`.
pub fn is_valid_connection_id(id: &str) -> bool {
    (1..=MAX_CONNECTION_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

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
}

impl ServerMessage<'_> {
    /// The metrics label of the message type.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::ConnectionEstablished { .. } => "connection_established",
            ServerMessage::Heartbeat { .. } => "heartbeat",
            ServerMessage::MessageResponse { .. } => "message_response",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Goodbye { .. } => "goodbye",
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

    /// The answer to a valid client message.
    pub fn answer<'a>(request: &'a ClientMessage<'a>, ts: u64) -> ServerMessage<'a> {
        match request {
            ClientMessage::Message { id, data } => ServerMessage::MessageResponse {
                id: id.as_deref(),
                data,
                ts,
            },
            ClientMessage::Ping { id } => ServerMessage::Pong {
                id: id.as_deref(),
                ts,
            },
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

    fn code(text: &str) -> ErrorCode {
        parse_client_frame(text, 1024).unwrap_err().code
    }

    #[test]
    fn valid_messages_parse() {
        let m = parse_client_frame(
            r#"{"type":"message","id":"1","data":{"b":1,"a":[1.0,2e3]}}"#,
            1024,
        )
        .unwrap();
        let ClientMessage::Message { id, data } = &m else {
            panic!("not a message: {m:?}")
        };
        assert_eq!(id.as_deref(), Some("1"));
        assert_eq!(
            data.get(),
            r#"{"b":1,"a":[1.0,2e3]}"#,
            "data kept byte for byte"
        );
        assert!(matches!(
            parse_client_frame(r#"{"type":"ping"}"#, 1024).unwrap(),
            ClientMessage::Ping { id: None }
        ));
        let m = parse_client_frame(r#"{"type":"message"}"#, 1024).unwrap();
        assert!(matches!(m, ClientMessage::Message { data, .. } if data.get() == "null"));
    }

    #[test]
    fn a_null_field_is_an_absent_one() {
        let m = parse_client_frame(r#"{"type":"ping","id":null}"#, 1024).unwrap();
        assert!(matches!(m, ClientMessage::Ping { id: None }));
        let m = parse_client_frame(r#"{"type":"message","data":null,"id":"1"}"#, 1024).unwrap();
        assert!(matches!(m, ClientMessage::Message { data, .. } if data.get() == "null"));
    }

    #[test]
    fn plain_ids_are_borrowed_and_escaped_ones_unescaped() {
        let m = parse_client_frame(r#"{"type":"ping","id":"a-1"}"#, 1024).unwrap();
        assert!(matches!(
            m,
            ClientMessage::Ping {
                id: Some(Cow::Borrowed("a-1"))
            }
        ));
        let m = parse_client_frame(r#"{"type":"ping","id":"a\"1\u00e9"}"#, 1024).unwrap();
        assert!(
            matches!(m, ClientMessage::Ping { id: Some(Cow::Owned(id)) } if id == "a\"1\u{e9}")
        );
    }

    #[test]
    fn each_error_code() {
        assert_eq!(code("{"), ErrorCode::InvalidJson);
        assert_eq!(code("hello"), ErrorCode::InvalidJson);
        assert_eq!(code("[1]"), ErrorCode::InvalidMessage);
        assert_eq!(code("\"text\""), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"id":"x"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"type":"ping","id":7}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"type":"ping","id":{"a":[1]}}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code(r#"{"type":null}"#), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"type":"ping","type":"ping"}"#),
            ErrorCode::InvalidMessage
        );
        let long = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(129));
        assert_eq!(code(&long), ErrorCode::InvalidMessage);
        let err = parse_client_frame(r#"{"type":"shout","id":"9"}"#, 1024).unwrap_err();
        assert_eq!(
            (err.code, err.id.as_deref()),
            (ErrorCode::UnknownType, Some("9"))
        );
        assert_eq!(err.message, "unknown message type 'shout'");
        assert_eq!(
            parse_client_frame(&"x".repeat(65), 64).unwrap_err().code,
            ErrorCode::MessageTooLarge
        );
    }

    #[test]
    fn id_limit_counts_characters_not_bytes() {
        let id = "é".repeat(128);
        let text = format!(r#"{{"type":"ping","id":"{id}"}}"#);
        assert!(parse_client_frame(&text, 4096).is_ok());
    }

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
            ServerMessage::answer(&req, 1).to_json(),
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
    fn serialised_messages_have_no_spare_capacity() {
        let data = format!(r#"{{"type":"message","data":"{}"}}"#, "x".repeat(20_000));
        for text in [
            r#"{"type":"message","data":"short"}"#,
            &data,
            r#"{"type":"ping"}"#,
        ] {
            let json =
                ServerMessage::answer(&parse_client_frame(text, 65536).unwrap(), 1).to_json();
            assert_eq!(json.capacity(), json.len(), "{json:.40}");
        }
    }

    #[test]
    fn connection_ids() {
        assert!(is_valid_connection_id("alice_01-B"));
        assert!(is_valid_connection_id(&"a".repeat(64)));
        for bad in ["", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(!is_valid_connection_id(bad), "{bad:?}");
        }
    }
}
