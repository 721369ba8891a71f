//! Property tests of protocol v1 parsing and validation (`concurrent_socket::protocol`):
//! arbitrary input never panics and gets exactly the error code the spec gives it, and valid
//! requests are answered with their `id` and `data` unchanged.
//!
//! The oracle (`expected`) restates docs/protocol.md independently of the server's code: it
//! classifies a parsed `serde_json::Value` plus the request's top-level keys (the server must
//! refuse duplicated `type`, `id` or `data`, which a `Value` would silently merge).

use std::collections::HashSet;
use std::fmt;

use concurrent_socket::protocol::{
    ClientMessage, ErrorCode, MAX_ID_CHARS, ServerMessage, is_valid_connection_id,
    parse_client_frame,
};
use proptest::prelude::*;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The server's default `MAX_MESSAGE_BYTES`.
const MAX_BYTES: usize = 64 * 1024;
/// The fields the protocol reads; every other top-level field is ignored.
const KNOWN_FIELDS: [&str; 5] = ["type", "id", "data", "channel", "recover"];
/// An error message never quotes unbounded input back.
const MAX_ERROR_MESSAGE_CHARS: usize = 256;

/// What the spec says the answer to a request is.
#[derive(Debug, PartialEq)]
enum Expected {
    /// `data` is `None` when the answer's `data` is JSON a `serde_json::Value` cannot hold
    /// (numbers beyond f64, lone surrogate escapes): valid RFC 8259, echoed as sent.
    Message {
        id: Option<String>,
        data: Option<Value>,
    },
    Ping {
        id: Option<String>,
    },
    Error {
        code: ErrorCode,
        id: Option<String>,
    },
}

/// The spec's classification of a request that is valid JSON.
fn expected(text: &str, value: &Value) -> Expected {
    let error = |code, id: Option<&str>| Expected::Error {
        code,
        id: id.map(str::to_owned),
    };
    let Value::Object(fields) = value else {
        return error(ErrorCode::InvalidMessage, None);
    };
    if has_duplicate_known_field(text) {
        return error(ErrorCode::InvalidMessage, None);
    }
    // docs/protocol.md: a JSON `null` field is the same as an absent one.
    let field = |name| fields.get(name).filter(|v| !v.is_null());
    let id = match field("id") {
        None => None,
        Some(Value::String(id)) if id.chars().count() <= MAX_ID_CHARS => Some(id.as_str()),
        Some(_) => return error(ErrorCode::InvalidMessage, None),
    };
    match field("type") {
        Some(Value::String(kind)) if kind == "message" => Expected::Message {
            id: id.map(str::to_owned),
            data: Some(field("data").cloned().unwrap_or(Value::Null)),
        },
        Some(Value::String(kind)) if kind == "ping" => Expected::Ping {
            id: id.map(str::to_owned),
        },
        Some(Value::String(_)) => error(ErrorCode::UnknownType, id),
        _ => error(ErrorCode::InvalidMessage, id),
    }
}

/// An answer as sent: `data` kept as raw JSON text.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    /// `None` when absent or `null`.
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    ts: u64,
}

impl Answer<'_> {
    /// The text of `data`, `null` when absent.
    fn data_text(&self) -> &str {
        self.data.map_or("null", RawValue::get)
    }
}

/// What the server actually answered, in the oracle's terms; checks the answer's JSON on the way.
fn actual(text: &str, max_bytes: usize) -> Expected {
    match parse_client_frame(text, max_bytes) {
        Ok(request) => {
            let json = ServerMessage::answer(&request, 7)
                .expect("a v1 request")
                .to_json();
            let answer: Answer = serde_json::from_str(&json).expect("answers are JSON");
            assert_eq!(answer.ts, 7);
            match request {
                ClientMessage::Message { .. } => {
                    assert_eq!(answer.kind, "message_response");
                    Expected::Message {
                        data: serde_json::from_str(answer.data_text()).ok(),
                        id: answer.id,
                    }
                }
                ClientMessage::Ping { .. } => {
                    assert_eq!(answer.kind, "pong");
                    assert!(answer.data.is_none(), "{json}");
                    Expected::Ping { id: answer.id }
                }
                other => unreachable!("answered as v1: {other:?}"),
            }
        }
        Err(err) => {
            assert!(!err.message.is_empty(), "{err:?} has no message");
            assert!(
                err.message.chars().count() <= MAX_ERROR_MESSAGE_CHARS,
                "{err:?} quotes too much"
            );
            let sent: Value = serde_json::from_str(&ServerMessage::error(&err, 7).to_json())
                .expect("errors are JSON");
            assert_eq!(sent["type"], "error");
            assert_eq!(sent["code"], err.code.as_str());
            assert_eq!(sent["message"], err.message.as_str());
            assert_eq!(sent.get("id").and_then(Value::as_str), err.id.as_deref());
            Expected::Error {
                code: err.code,
                id: err.id,
            }
        }
    }
}

/// Whether a JSON object's text repeats `type`, `id` or `data` at the top level.
fn has_duplicate_known_field(text: &str) -> bool {
    struct TopLevelKeys;
    impl<'de> Visitor<'de> for TopLevelKeys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let keys = serde_json::Deserializer::from_str(text)
        .deserialize_map(TopLevelKeys)
        .unwrap_or_default();
    let mut seen = HashSet::new();
    keys.into_iter()
        .filter(|k| KNOWN_FIELDS.contains(&k.as_str()))
        .any(|k| !seen.insert(k))
}

/// Any JSON value (finite numbers, arbitrary Unicode strings), nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a request field: usually of the right type, sometimes not, sometimes absent.
fn field(right: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        6 => right.prop_map(Some),
        2 => json_value().prop_map(Some),
    ]
}

fn id_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..=MAX_ID_CHARS),
        prop::collection::vec(any::<char>(), MAX_ID_CHARS - 2..MAX_ID_CHARS + 3),
    ]
    .prop_map(|chars| Value::String(chars.into_iter().collect()))
}

fn type_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!("message")),
        3 => Just(json!("ping")),
        2 => any::<String>().prop_map(Value::String),
        1 => Just(json!("Message")),
    ]
}

/// Request-shaped JSON objects: `type`, `id`, `data` (each maybe absent or mistyped) and
/// extra fields the server must ignore.
fn request_object() -> impl Strategy<Value = Value> {
    (
        field(type_string()),
        field(id_string()),
        field(json_value()),
        prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
    )
        .prop_map(|(kind, id, data, extra)| {
            let mut fields: Map<String, Value> = extra
                .into_iter()
                .filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_str()))
                .collect();
            for (name, value) in [("type", kind), ("id", id), ("data", data)] {
                if let Some(value) = value {
                    fields.insert(name.to_owned(), value);
                }
            }
            Value::Object(fields)
        })
}

/// Single-character edits (insert, delete, replace) at arbitrary positions.
fn mutate(text: &str, edits: &[(prop::sample::Index, u8, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, op, c) in edits {
        let i = at.index(chars.len() + 1);
        match op % 3 {
            0 => chars.insert(i, *c),
            1 if i < chars.len() => {
                chars.remove(i);
            }
            _ if i < chars.len() => chars[i] = *c,
            _ => chars.push(*c),
        }
    }
    chars.into_iter().collect()
}

/// Characters JSON syntax is made of, so that edits often stay near-valid.
fn json_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(r#"{}[]":,\ 0123456789.eE-+truefalsn"#.chars().collect::<Vec<_>>()),
        any::<char>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every valid JSON request gets exactly the spec's answer or error code.
    #[test]
    fn requests_are_classified_as_the_spec_says(request in request_object()) {
        let text = serde_json::to_string(&request).unwrap();
        // The oracle reads the same text as the server (floats need not survive a round trip).
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(actual(&text, MAX_BYTES), expected(&text, &reparsed));
    }

    /// JSON that is not an object is an `invalid_message`, never a crash.
    #[test]
    fn non_objects_are_invalid_messages(value in json_value().prop_filter("not an object", |v| !v.is_object())) {
        let text = serde_json::to_string(&value).unwrap();
        prop_assert_eq!(actual(&text, MAX_BYTES), Expected::Error { code: ErrorCode::InvalidMessage, id: None });
    }

    /// A valid request's `data` comes back byte for byte (no reformatting, reordering or
    /// number rewriting), whatever its `id`.
    #[test]
    fn message_data_is_answered_unchanged(data in json_value(), id in prop::option::of("[ -~]{0,128}")) {
        let data_text = serde_json::to_string_pretty(&data).unwrap();
        let id_text = id.as_ref().map(|id| format!(r#""id":{},"#, json!(id))).unwrap_or_default();
        let text = format!(r#"{{ {id_text} "data" : {data_text} , "type":"message"}}"#);
        let request = parse_client_frame(&text, MAX_BYTES).expect("a valid message");
        let answer = ServerMessage::answer(&request, 1).expect("a v1 request").to_json();
        let answer: Answer = serde_json::from_str(&answer).expect("answers are JSON");
        prop_assert_eq!(answer.data_text(), data_text.as_str());
        prop_assert_eq!(answer.id, id);
    }

    /// RFC 8259 numbers that no f64 holds come back as sent, not rounded or refused.
    #[test]
    fn numbers_beyond_f64_are_answered_unchanged(number in "-?[1-9][0-9]{0,30}(\\.[0-9]{1,30})?[eE][+-]?[4-9][0-9]{2,4}") {
        let text = format!(r#"{{"type":"message","data":[{number}]}}"#);
        let request = parse_client_frame(&text, MAX_BYTES).expect("a valid message");
        let answer = ServerMessage::answer(&request, 1).expect("a v1 request").to_json();
        let answer: Answer = serde_json::from_str(&answer).expect("answers are JSON");
        prop_assert_eq!(answer.data_text(), format!("[{number}]"));
    }

    /// Escaped spellings of the field names and of `type`'s value mean the same thing.
    #[test]
    fn escaped_names_are_the_same_names(kind in prop::sample::select(vec!["message", "ping"]), mask in any::<u64>()) {
        let escape = |s: &str| -> String {
            s.chars().enumerate().map(|(i, c)| {
                if mask >> (i % 64) & 1 == 1 { format!("\\u{:04x}", c as u32) } else { c.to_string() }
            }).collect()
        };
        let text = format!(r#"{{"{}":"{}","{}":"x"}}"#, escape("type"), escape(kind), escape("id"));
        let want = if kind == "ping" {
            Expected::Ping { id: Some("x".into()) }
        } else {
            Expected::Message { id: Some("x".into()), data: Some(Value::Null) }
        };
        prop_assert_eq!(actual(&text, MAX_BYTES), want);
    }

    /// A repeated `type`, `id` or `data` is refused, not resolved by picking one of them.
    #[test]
    fn duplicated_known_fields_are_invalid(name in prop::sample::select(KNOWN_FIELDS.to_vec()), first in json_value(), second in json_value()) {
        let text = format!(r#"{{"type":"ping","{name}":{first},"{name}":{second}}}"#);
        prop_assert_eq!(actual(&text, MAX_BYTES), Expected::Error { code: ErrorCode::InvalidMessage, id: None });
    }

    /// Any truncation of a request, or trailing garbage after it, is `invalid_json`.
    #[test]
    fn broken_json_is_invalid_json(request in request_object(), cut in any::<prop::sample::Index>(), tail in "[^ \t\r\n]{1,8}") {
        let text = serde_json::to_string(&request).unwrap();
        let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        let truncated = &text[..boundaries[cut.index(boundaries.len())]];
        prop_assert_eq!(actual(truncated, MAX_BYTES), Expected::Error { code: ErrorCode::InvalidJson, id: None });
        let trailing = format!("{text}{tail}");
        prop_assert_eq!(actual(&trailing, MAX_BYTES), Expected::Error { code: ErrorCode::InvalidJson, id: None });
    }

    /// Arbitrary edits of requests never panic, and whenever the result is still valid JSON or
    /// plainly invalid, the answer is the spec's.
    #[test]
    fn edited_requests_never_panic(request in request_object(),
                                   edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), json_char()), 1..4)) {
        let text = mutate(&serde_json::to_string(&request).unwrap(), &edits);
        let got = actual(&text, MAX_BYTES);
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => prop_assert_eq!(got, expected(&text, &value)),
            // RFC 8259 allows numbers beyond f64 and lone surrogate escapes, which a Value
            // refuses; the server may echo them raw, so only other syntax errors are checked.
            Err(e) if e.to_string().contains("out of range") || e.to_string().contains("surrogate") => {}
            Err(_) => prop_assert_eq!(got, Expected::Error { code: ErrorCode::InvalidJson, id: None }),
        }
    }

    /// Arbitrary text never panics; anything over the size limit is `message_too_large`
    /// whatever it contains, and anything within it is judged on its content.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), max_bytes in prop_oneof![0usize..64, Just(MAX_BYTES)]) {
        let got = actual(&text, max_bytes);
        if text.len() > max_bytes {
            prop_assert_eq!(got, Expected::Error { code: ErrorCode::MessageTooLarge, id: None });
        } else if let Ok(value) = serde_json::from_str::<Value>(&text) {
            prop_assert_eq!(got, expected(&text, &value));
        }
    }

    /// The size limit is on bytes, inclusive: a request of exactly `max_bytes` is served.
    #[test]
    fn size_limit_is_inclusive_and_in_bytes(id in "[a-zé]{0,40}", pad in 0usize..200) {
        let text = format!(r#"{{"type":"ping","id":"{id}"}}{}"#, " ".repeat(pad));
        prop_assert_eq!(actual(&text, text.len()), Expected::Ping { id: Some(id.clone()) });
        prop_assert_eq!(actual(&text, text.len() - 1), Expected::Error { code: ErrorCode::MessageTooLarge, id: None });
    }

    /// `id` is limited to 128 characters (not bytes); one more is `invalid_message`.
    #[test]
    fn id_length_limit_counts_characters(c in any::<char>().prop_filter("needs no escape", |c| *c != '"' && *c != '\\' && !c.is_control()), extra in 0usize..3) {
        let id: String = std::iter::repeat_n(c, MAX_ID_CHARS + extra).collect();
        let text = format!(r#"{{"type":"ping","id":"{id}"}}"#);
        let want = if extra == 0 {
            Expected::Ping { id: Some(id) }
        } else {
            Expected::Error { code: ErrorCode::InvalidMessage, id: None }
        };
        prop_assert_eq!(actual(&text, MAX_BYTES), want);
    }

    /// A `connectionId` is 1 to 64 of `A-Z a-z 0-9 _ -`, nothing else (no other letters,
    /// no percent-encoding, no path separators).
    #[test]
    fn connection_ids_are_exactly_the_spec_alphabet(id in prop_oneof![
        "[A-Za-z0-9_-]{0,70}",
        "[A-Za-z0-9_-]{0,40}[^A-Za-z0-9_-][A-Za-z0-9_-]{0,40}",
        any::<String>(),
    ]) {
        let spec = (1..=64).contains(&id.chars().count())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        prop_assert_eq!(is_valid_connection_id(&id), spec, "{:?}", id);
    }
}
