//! What the Redis engine writes into Redis and reads back (docs/redis.md, "Layout and
//! guarantees"): the keys and topic of a channel, a publication's body (JSON with its
//! publisher and its `data` byte for byte), the pub/sub message (`<offset> <epoch> <body>`)
//! and the history stream's entries (id `<offset>-0`, one field `p` holding the body).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::super::broker::{NewPublication, Publication};

/// The names of a deployment's keys and topics (`REDIS_KEY_PREFIX`).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// `<prefix>:ch:`, what every topic starts with.
    topic_prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            topic_prefix: format!("{prefix}:ch:"),
        }
    }

    /// The channel's meta hash and history stream. The channel in braces is the hash tag:
    /// a Redis Cluster keeps both keys on one slot, as the script needs.
    pub(super) fn channel(&self, channel: &str) -> [String; 2] {
        let prefix = &self.prefix;
        [
            format!("{prefix}:{{{channel}}}:meta"),
            format!("{prefix}:{{{channel}}}:history"),
        ]
    }

    pub(super) fn topic(&self, channel: &str) -> String {
        format!("{}{channel}", self.topic_prefix)
    }

    /// The channel a topic is of, when it is one of this deployment's.
    pub(super) fn channel_of<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(&self.topic_prefix)
    }
}

#[derive(Serialize)]
struct BodyOut<'a> {
    f: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    d: &'a RawValue,
}

#[derive(Deserialize)]
struct BodyIn {
    f: Box<str>,
    u: Option<Box<str>>,
    d: Box<RawValue>,
}

/// A publication's body as stored and published: `{"f":from,"u":user,"d":data}`.
pub(super) fn body(publication: &NewPublication) -> String {
    serde_json::to_string(&BodyOut {
        f: &publication.from,
        u: publication.user.as_deref(),
        d: &publication.data,
    })
    .expect("strings and raw JSON serialise")
}

/// The publication at `offset` from its body.
pub(super) fn publication(offset: u64, body: &[u8]) -> Option<Publication> {
    let body: BodyIn = serde_json::from_slice(body).ok()?;
    Some(Publication {
        offset,
        data: body.d,
        from: body.f,
        user: body.u,
    })
}

/// A pub/sub message: its offset, epoch and publication.
pub(super) fn message(payload: &[u8]) -> Option<(u64, &str, Publication)> {
    let mut parts = payload.splitn(3, |&b| b == b' ');
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let epoch = std::str::from_utf8(parts.next()?).ok()?;
    let publication = publication(offset, parts.next()?)?;
    Some((offset, epoch, publication))
}

/// The offset of a history entry from its stream id (`<offset>-0`).
pub(super) fn entry_offset(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}

/// A new epoch, for a channel Redis does not hold: random, never the same twice.
pub(super) fn new_epoch() -> Arc<str> {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((n, std::process::id()));
    format!("{random:016x}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_carries_offset_epoch_and_the_data_byte_for_byte() {
        let new = NewPublication {
            data: RawValue::from_string(r#"{"b":1, "a":"x y"}"#.into()).unwrap(),
            from: "alice".into(),
            user: Some("u \"1\"".into()),
        };
        let payload = format!("17 abc {}", body(&new));
        let (offset, epoch, publication) = message(payload.as_bytes()).unwrap();
        assert_eq!((offset, epoch), (17, "abc"));
        assert_eq!(publication.data.get(), r#"{"b":1, "a":"x y"}"#);
        assert_eq!(
            (&*publication.from, publication.user.as_deref()),
            ("alice", Some("u \"1\""))
        );
        assert!(message(b"x abc {}").is_none());
        assert!(message(b"1 abc not-json").is_none());
    }

    #[test]
    fn keys_share_the_channel_hash_tag() {
        let keys = Keys::new("cs");
        assert_eq!(
            keys.channel("room:1"),
            ["cs:{room:1}:meta", "cs:{room:1}:history"]
        );
        assert_eq!(keys.topic("room:1"), "cs:ch:room:1");
        assert_eq!(keys.channel_of("cs:ch:room:1"), Some("room:1"));
        assert_eq!(keys.channel_of("other:ch:room:1"), None);
        assert_eq!(entry_offset("42-0"), Some(42));
        assert_ne!(new_epoch(), new_epoch());
    }
}
