//! The v1.1 request fields: the channel name rule and the `recover` position.

use serde::Deserialize;

/// Longest channel name, in characters (all ASCII, so bytes too).
pub const MAX_CHANNEL_CHARS: usize = 128;

/// Whether `name` is a channel name: 1 to 128 characters of `A-Z a-z 0-9 _ - : . @`.
pub fn is_valid_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-:.@".contains(&b))
}

/// The position a client recovers from: the last offset it saw, in which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recover {
    pub offset: u64,
    pub epoch: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        assert!(is_valid_channel("room:42"));
        assert!(is_valid_channel("a.b-c_d@e:F9"));
        assert!(is_valid_channel(&"x".repeat(128)));
        for bad in ["", "a b", "a/b", "é", "a*", &"x".repeat(129)] {
            assert!(!is_valid_channel(bad), "{bad:?}");
        }
    }
}
