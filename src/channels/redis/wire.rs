//! What the Redis engine writes into Redis and reads back (docs/redis.md, "Layout and
//! guarantees"): the keys and topic of a channel, a publication's body (JSON with its
//! publisher and its `data` byte for byte), the pub/sub message (`<offset> <epoch> <body>`)
//! and the history stream's entries (id `<offset>-0`, one field `p` holding the body). What a
//! publish sends (keys, topic, body, epoch) is written straight into the command's buffer,
//! with no string of its own in between: a publish's arguments cost no allocation.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::{RedisWrite, ToRedisArgs};
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

    /// The channel's meta hash. The channel in braces is the hash tag: a Redis Cluster keeps
    /// both of a channel's keys on one slot, as the scripts need.
    pub(super) fn meta<'a>(&'a self, channel: &'a str) -> Joined<'a, 4> {
        Joined([&self.prefix, ":{", channel, "}:meta"])
    }

    /// The channel's history stream (same hash tag as its meta hash).
    pub(super) fn history<'a>(&'a self, channel: &'a str) -> Joined<'a, 4> {
        Joined([&self.prefix, ":{", channel, "}:history"])
    }

    /// Bytes of the prefix, to size a command.
    pub(super) fn prefix_len(&self) -> usize {
        self.prefix.len()
    }

    pub(super) fn topic(&self, channel: &str) -> String {
        self.topic_arg(channel).to_string()
    }

    /// The topic as a command argument.
    pub(super) fn topic_arg<'a>(&'a self, channel: &'a str) -> Joined<'a, 2> {
        Joined([&self.topic_prefix, channel])
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

/// One command argument made of pieces, written into the command as one (a key or a topic).
#[derive(Debug, Clone, Copy)]
pub(super) struct Joined<'a, const N: usize>([&'a str; N]);

impl<const N: usize> ToRedisArgs for Joined<'_, N> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        for piece in self.0 {
            arg.write_all(piece.as_bytes())
                .expect("a command's buffer takes every byte");
        }
    }
}

impl<const N: usize> fmt::Display for Joined<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|piece| f.write_str(piece))
    }
}

/// A publication's body as stored and published, `{"f":from,"u":user,"d":data}`: a command
/// argument serialised straight into the command.
pub(super) struct Body<'a>(pub(super) &'a NewPublication);

impl Body<'_> {
    pub(super) fn write(&self, out: impl Write) {
        let body = BodyOut {
            f: &self.0.from,
            u: self.0.user.as_deref(),
            d: &self.0.data,
        };
        serde_json::to_writer(out, &body).expect("strings and raw JSON serialise");
    }
}

impl ToRedisArgs for Body<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        self.write(out.writer_for_next_arg());
    }
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

/// An epoch: 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Epoch([u8; 16]);

/// A new epoch, for a channel Redis does not hold: random, never the same twice. Every
/// publish sends one (used only when the channel is new), so it is made without a string.
pub(super) fn new_epoch() -> Epoch {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((n, std::process::id()));
    let mut hex = [0; 16];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(random >> (60 - 4 * i) & 0xf) as usize];
    }
    Epoch(hex)
}

impl ToRedisArgs for Epoch {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        out.write_arg(&self.0);
    }
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
        let mut payload = b"17 abc ".to_vec();
        Body(&new).write(&mut payload);
        let (offset, epoch, publication) = message(&payload).unwrap();
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
        assert_eq!(keys.meta("room:1").to_string(), "cs:{room:1}:meta");
        assert_eq!(keys.history("room:1").to_string(), "cs:{room:1}:history");
        assert_eq!(keys.topic("room:1"), "cs:ch:room:1");
        assert_eq!(keys.channel_of("cs:ch:room:1"), Some("room:1"));
        assert_eq!(keys.channel_of("other:ch:room:1"), None);
        assert_eq!(entry_offset("42-0"), Some(42));
        assert_ne!(new_epoch(), new_epoch());
    }

    #[test]
    fn arguments_are_written_as_the_strings_they_stand_for() {
        let keys = Keys::new("cs");
        let new = NewPublication {
            data: RawValue::from_string("[1]".into()).unwrap(),
            from: "a".into(),
            user: None,
        };
        let epoch = new_epoch();
        let mut cmd = redis::cmd("X");
        cmd.arg(keys.meta("r"))
            .arg(keys.topic_arg("r"))
            .arg(Body(&new))
            .arg(epoch);
        let mut plain = redis::cmd("X");
        plain
            .arg("cs:{r}:meta")
            .arg("cs:ch:r")
            .arg(r#"{"f":"a","d":[1]}"#)
            .arg(&epoch.0[..]);
        assert_eq!(cmd.get_packed_command(), plain.get_packed_command());
        assert!(epoch.0.iter().all(u8::is_ascii_hexdigit));
    }
}
