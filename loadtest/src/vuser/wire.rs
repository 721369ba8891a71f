//! The protocol v1 messages a user writes and reads (docs/protocol.md). Reading parses only
//! the fields a user acts on, borrowed from the frame; `data` is skipped unread. A scenario
//! that speaks more of the protocol adds its messages here: a writer for each message it
//! sends, an [`Incoming`] variant for each it reads.

use serde::Deserialize;

/// `code` counted for an `error` without one.
pub(super) const MISSING_CODE: &str = "missing_code";
/// `reason` counted for a `goodbye` without one.
pub(super) const MISSING_REASON: &str = "missing_reason";

/// `{"type":"message","id":"<id>","data":"<payload>"}`; `payload` needs no JSON escaping.
pub(super) fn message(id: u64, payload: &str) -> String {
    format!(r#"{{"type":"message","id":"{id}","data":"{payload}"}}"#)
}

/// A server message, by its `type`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Incoming<'a> {
    /// `connection_established`: the greeting that ends a connect.
    Established,
    /// `message_response` to the `message` with this `id`.
    Answer { id: Option<&'a str> },
    /// `error`, in answer to the message with this `id` when it has one.
    Error { id: Option<&'a str>, code: &'a str },
    /// `goodbye`: the server asks the user to leave, and says whether to come back.
    Goodbye { reason: &'a str, reconnect: bool },
    /// `heartbeat` or `pong`: nothing to do.
    Chatter,
    /// Any other `type`: not a message a user expects.
    Unexpected,
}

/// The fields of a server message that a user looks at.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<&'a str>,
    code: Option<&'a str>,
    reason: Option<&'a str>,
    reconnect: Option<bool>,
}

/// `None` when the text is not a JSON object with a string `type`.
pub(super) fn parse(text: &str) -> Option<Incoming<'_>> {
    let fields: Fields = serde_json::from_str(text).ok()?;
    Some(match fields.kind {
        "connection_established" => Incoming::Established,
        "message_response" => Incoming::Answer { id: fields.id },
        "error" => Incoming::Error {
            id: fields.id,
            code: fields.code.unwrap_or(MISSING_CODE),
        },
        "goodbye" => Incoming::Goodbye {
            reason: fields.reason.unwrap_or(MISSING_REASON),
            reconnect: fields.reconnect.unwrap_or(false),
        },
        "heartbeat" | "pong" => Incoming::Chatter,
        _ => Incoming::Unexpected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_parse_without_reading_data() {
        assert_eq!(
            parse(
                r#"{"type":"message_response","id":"7","data":{"deep":[1,2,{"x":"y\n"}]},"ts":1}"#
            ),
            Some(Incoming::Answer { id: Some("7") })
        );
        assert_eq!(
            parse(r#"{"type":"goodbye","reason":"server_shutdown","reconnect":true,"ts":1}"#),
            Some(Incoming::Goodbye {
                reason: "server_shutdown",
                reconnect: true
            })
        );
        assert!(parse("not json").is_none());
        assert!(parse(r#"{"id":"1"}"#).is_none(), "type is required");
    }

    #[test]
    fn missing_fields_get_the_labels_the_report_counts() {
        assert_eq!(
            parse(r#"{"type":"error","ts":1}"#),
            Some(Incoming::Error {
                id: None,
                code: MISSING_CODE
            })
        );
        assert_eq!(
            parse(r#"{"type":"goodbye","ts":1}"#),
            Some(Incoming::Goodbye {
                reason: MISSING_REASON,
                reconnect: false
            })
        );
        assert_eq!(parse(r#"{"type":"pong","ts":1}"#), Some(Incoming::Chatter));
        assert_eq!(parse(r#"{"type":"surprise"}"#), Some(Incoming::Unexpected));
    }

    #[test]
    fn a_message_is_the_json_the_protocol_asks_for() {
        let text = message(12, "xxx");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type": "message", "id": "12", "data": "xxx"})
        );
    }
}
