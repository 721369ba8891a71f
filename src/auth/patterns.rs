//! The `channels` claim of a token: the channels a user may subscribe and publish to, each an
//! exact name or a prefix ending in `*` (`room:*` allows `room:1` and `room:`; `*` alone allows
//! every channel). A token without the claim allows none.

/// One allowed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(Box<str>),
    Prefix(Box<str>),
}

/// The channels a token allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPatterns(Box<[Pattern]>);

impl ChannelPatterns {
    /// Reads the claim's list. A `*` anywhere but at the end is a literal character, which no
    /// valid channel name contains: such a pattern allows nothing.
    pub fn new(patterns: Vec<String>) -> ChannelPatterns {
        let patterns = patterns
            .into_iter()
            .map(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => Pattern::Prefix(prefix.into()),
                None => Pattern::Exact(pattern.into()),
            });
        ChannelPatterns(patterns.collect())
    }

    /// The claim's list again: what [`ChannelPatterns::new`] reads back into these patterns.
    pub fn claim(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|pattern| match pattern {
                Pattern::Exact(name) => name.to_string(),
                Pattern::Prefix(prefix) => format!("{prefix}*"),
            })
            .collect()
    }

    /// Whether one of the patterns allows `channel`.
    pub fn allow(&self, channel: &str) -> bool {
        self.0.iter().any(|pattern| match pattern {
            Pattern::Exact(name) => **name == *channel,
            Pattern::Prefix(prefix) => channel.starts_with(&**prefix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> ChannelPatterns {
        ChannelPatterns::new(list.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn exact_names_allow_only_themselves() {
        let p = patterns(&["room:1", "news"]);
        assert!(p.allow("room:1"));
        assert!(p.allow("news"));
        assert!(!p.allow("room:10"));
        assert!(!p.allow("room:"));
        assert!(!p.allow("new"));
    }

    #[test]
    fn a_trailing_star_is_a_prefix() {
        let p = patterns(&["room:*"]);
        assert!(p.allow("room:1"));
        assert!(p.allow("room:"));
        assert!(p.allow("room:a:b"));
        assert!(!p.allow("room"));
        assert!(!p.allow("rooms:1"));
        assert!(patterns(&["*"]).allow("anything"));
    }

    #[test]
    fn the_claim_reads_back_into_the_same_patterns() {
        let p = patterns(&["room:*", "news", "*", "a*b"]);
        assert_eq!(p.claim(), ["room:*", "news", "*", "a*b"]);
        assert_eq!(ChannelPatterns::new(p.claim()), p);
    }

    #[test]
    fn no_patterns_allow_nothing() {
        assert!(!ChannelPatterns::default().allow("room:1"));
        assert!(!patterns(&[]).allow("room:1"));
    }

    #[test]
    fn a_star_inside_a_pattern_is_literal() {
        let p = patterns(&["room:*:admin"]);
        assert!(!p.allow("room:1:admin"));
        assert!(
            p.allow("room:*:admin"),
            "literal match, though no valid channel has a star"
        );
    }
}
