//! The protocol v1.1 messages a channel user writes and reads (docs/protocol.md): the
//! requests, and the answers and publications parsed for the fields a user acts on. A
//! publication's `data` is what this load generator publishes, `{"t": <send time, µs since
//! the Unix epoch>, "p": <padding>}`, so that a subscriber measures its delivery latency.
//! Other messages are left to [`super::wire`].

use serde::Deserialize;

/// The `id` of every `subscribe`, so that an `error` refusing one is told from a refused
/// `publish` (whose ids are numbers).
pub(super) const SUBSCRIBE_ID: &str = "s";

/// `{"type":"subscribe",...}`, with `recover` from (`offset`, `epoch`) when given.
pub(super) fn subscribe(channel: &str, recover: Option<(u64, &str)>) -> String {
    match recover {
        None => format!(r#"{{"type":"subscribe","channel":"{channel}","id":"{SUBSCRIBE_ID}"}}"#),
        Some((offset, epoch)) => format!(
            r#"{{"type":"subscribe","channel":"{channel}","id":"{SUBSCRIBE_ID}","recover":{{"offset":{offset},"epoch":{}}}}}"#,
            serde_json::to_string(epoch).expect("a string serialises")
        ),
    }
}

pub(super) fn unsubscribe(channel: &str) -> String {
    format!(r#"{{"type":"unsubscribe","channel":"{channel}"}}"#)
}

/// `publish` with id `id`, sent at `sent_micros`; `padding` needs no JSON escaping.
pub(super) fn publish(channel: &str, id: u64, sent_micros: u64, padding: &str) -> String {
    format!(
        r#"{{"type":"publish","channel":"{channel}","id":"{id}","data":{{"t":{sent_micros},"p":"{padding}"}}}}"#
    )
}

/// The load generator's `data`: when it was published.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(super) struct Stamp {
    pub t: u64,
}

/// One publication, live or recovered; `data` is `None` when it is not a [`Stamp`]; `from`
/// is its publisher's connection id.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(super) struct Item {
    pub offset: u64,
    pub data: Option<Stamp>,
    pub from: Option<String>,
}

/// A v1.1 server message.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ChannelIncoming {
    Subscribed {
        epoch: String,
        offset: u64,
        recovered: Option<bool>,
        publications: Vec<Item>,
    },
    /// `reason` set when the server ended the subscription itself.
    Unsubscribed {
        reason: Option<String>,
    },
    /// A `publish` acknowledged: it holds `offset` in `epoch`.
    Published {
        offset: u64,
        epoch: String,
    },
    Publication(Item),
}

#[derive(Deserialize)]
struct Fields {
    #[serde(rename = "type")]
    kind: String,
    epoch: Option<String>,
    offset: Option<u64>,
    recovered: Option<bool>,
    #[serde(default)]
    publications: Vec<Item>,
    reason: Option<String>,
    data: Option<Stamp>,
    from: Option<String>,
}

/// `None` for a message that is not one of v1.1's answers (left to [`super::wire::parse`]).
pub(super) fn parse(text: &str) -> Option<ChannelIncoming> {
    // Without allocating: every publication of a run passes here.
    let kind = text.strip_prefix(r#"{"type":""#)?;
    let known = ["subscribed", "unsubscribed", "published", "publication"]
        .iter()
        .any(|k| {
            kind.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('"'))
        });
    if !known {
        return None;
    }
    let f: Fields = serde_json::from_str(text).ok()?;
    Some(match f.kind.as_str() {
        "subscribed" => ChannelIncoming::Subscribed {
            epoch: f.epoch?,
            offset: f.offset?,
            recovered: f.recovered,
            publications: f.publications,
        },
        "unsubscribed" => ChannelIncoming::Unsubscribed { reason: f.reason },
        "published" => ChannelIncoming::Published {
            offset: f.offset?,
            epoch: f.epoch?,
        },
        "publication" => ChannelIncoming::Publication(Item {
            offset: f.offset?,
            data: f.data,
            from: f.from,
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_json_the_protocol_asks_for() {
        let v: serde_json::Value =
            serde_json::from_str(&subscribe("room:1", Some((4, "e\"1")))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "subscribe", "channel": "room:1", "id": "s", "recover": {"offset": 4, "epoch": "e\"1"}})
        );
        let v: serde_json::Value = serde_json::from_str(&publish("c", 7, 123, "xx")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "publish", "channel": "c", "id": "7", "data": {"t": 123, "p": "xx"}})
        );
        let v: serde_json::Value = serde_json::from_str(&unsubscribe("c")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "unsubscribe", "channel": "c"})
        );
    }

    #[test]
    fn answers_and_publications_parse() {
        assert_eq!(
            parse(
                r#"{"type":"publication","channel":"c","offset":3,"data":{"t":9,"p":"x"},"from":"a","ts":1}"#
            ),
            Some(ChannelIncoming::Publication(Item {
                offset: 3,
                data: Some(Stamp { t: 9 }),
                from: Some("a".into()),
            }))
        );
        assert_eq!(
            parse(
                r#"{"type":"subscribed","channel":"c","epoch":"E","offset":5,"recovered":true,"publications":[{"offset":5,"data":{"t":1},"from":"a"}],"ts":1}"#
            ),
            Some(ChannelIncoming::Subscribed {
                epoch: "E".into(),
                offset: 5,
                recovered: Some(true),
                publications: vec![Item {
                    offset: 5,
                    data: Some(Stamp { t: 1 }),
                    from: Some("a".into()),
                }],
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"unsubscribed","channel":"c","reason":"insufficient_state","resubscribe":true,"ts":1}"#
            ),
            Some(ChannelIncoming::Unsubscribed {
                reason: Some("insufficient_state".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"published","channel":"c","id":"1","offset":8,"epoch":"E","ts":1}"#),
            Some(ChannelIncoming::Published {
                offset: 8,
                epoch: "E".into()
            })
        );
        assert_eq!(parse(r#"{"type":"pong","ts":1}"#), None);
        assert_eq!(parse(r#"{"type":"publication","offset":"x"}"#), None);
    }
}
