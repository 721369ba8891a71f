//! Client messages: parsing and validating one text frame into a request or the protocol
//! error to answer it with, and the `connectionId` rule.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::channel::{MAX_CHANNEL_CHARS, Recover, is_valid_channel};
use super::names::{ClientType, ErrorCode};

/// Longest `id` a client may send, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest `connectionId`, in characters.
pub const MAX_CONNECTION_ID_CHARS: usize = 64;
/// How much of an unknown `type` is quoted back in the error message.
const MAX_QUOTED_TYPE_CHARS: usize = 64;

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
    Subscribe {
        id: Option<Cow<'a, str>>,
        channel: Cow<'a, str>,
        recover: Option<Recover>,
    },
    Unsubscribe {
        id: Option<Cow<'a, str>>,
        channel: Cow<'a, str>,
    },
    Publish {
        id: Option<Cow<'a, str>>,
        channel: Cow<'a, str>,
        data: &'a RawValue,
    },
}

impl ClientMessage<'_> {
    /// The type of the message, as counted.
    pub fn kind(&self) -> ClientType {
        match self {
            ClientMessage::Message { .. } => ClientType::Message,
            ClientMessage::Ping { .. } => ClientType::Ping,
            ClientMessage::Subscribe { .. } => ClientType::Subscribe,
            ClientMessage::Unsubscribe { .. } => ClientType::Unsubscribe,
            ClientMessage::Publish { .. } => ClientType::Publish,
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
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>, id: Option<&str>) -> Self {
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
    #[serde(borrow, default)]
    channel: StringField<'a>,
    #[serde(borrow, default)]
    recover: Option<&'a RawValue>,
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
        "subscribe" => Ok(ClientMessage::Subscribe {
            channel: channel(envelope.channel.into_text(), id.as_deref())?,
            recover: recover(envelope.recover, id.as_deref())?,
            id,
        }),
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            channel: channel(envelope.channel.into_text(), id.as_deref())?,
            id,
        }),
        "publish" => Ok(ClientMessage::Publish {
            channel: channel(envelope.channel.into_text(), id.as_deref())?,
            data: envelope.data.unwrap_or(&NULL),
            id,
        }),
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

/// The `channel` of a request, or `invalid_channel`.
fn channel<'a>(
    field: Result<Option<Cow<'a, str>>, ()>,
    id: Option<&str>,
) -> Result<Cow<'a, str>, ProtocolError> {
    match field {
        Ok(Some(name)) if is_valid_channel(&name) => Ok(name),
        Ok(Some(_)) => Err(ProtocolError::new(
            ErrorCode::InvalidChannel,
            format!("channel must be 1 to {MAX_CHANNEL_CHARS} characters of A-Z a-z 0-9 _ - : . @"),
            id,
        )),
        Ok(None) | Err(()) => Err(ProtocolError::new(
            ErrorCode::InvalidChannel,
            "channel must be a string",
            id,
        )),
    }
}

/// The `recover` of a `subscribe`, or `invalid_message`.
fn recover(field: Option<&RawValue>, id: Option<&str>) -> Result<Option<Recover>, ProtocolError> {
    match field.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => serde_json::from_str::<Recover>(text)
            .map(Some)
            .map_err(|_| {
                ProtocolError::new(
                    ErrorCode::InvalidMessage,
                    "recover must be {\"offset\": integer >= 0, \"epoch\": string}",
                    id,
                )
            }),
    }
}

/// Whether a path segment is a valid `connectionId`.
pub fn is_valid_connection_id(id: &str) -> bool {
    (1..=MAX_CONNECTION_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
    fn connection_ids() {
        assert!(is_valid_connection_id("alice_01-B"));
        assert!(is_valid_connection_id(&"a".repeat(64)));
        for bad in ["", "a b", "a/b", "é", &"a".repeat(65)] {
            assert!(!is_valid_connection_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn recover_positions() {
        let raw = |s: &str| RawValue::from_string(s.into()).unwrap();
        let ok = recover(Some(&raw(r#"{"offset":3,"epoch":"e"}"#)), None).unwrap();
        assert_eq!(
            ok,
            Some(Recover {
                offset: 3,
                epoch: "e".into()
            })
        );
        assert_eq!(recover(None, None).unwrap(), None);
        for bad in [
            r#"{"offset":-1,"epoch":"e"}"#,
            r#"{"offset":1}"#,
            r#"{"offset":1.5,"epoch":"e"}"#,
            "7",
            r#"{"offset":1,"epoch":2}"#,
        ] {
            let err = recover(Some(&raw(bad)), Some("i")).unwrap_err();
            assert_eq!(
                (err.code, err.id.as_deref()),
                (ErrorCode::InvalidMessage, Some("i")),
                "{bad}"
            );
        }
    }
}
