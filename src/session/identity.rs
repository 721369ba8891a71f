//! Who is on a chat connection when authentication is on, and what it may access: the hook
//! the channel requests consult before a `subscribe` or `publish` (tokens fill it in).

/// Who is on the connection when authentication is on: the hook of tokens (issue 16's
/// "auth" part). `None` on a connection means authentication is off: every channel allowed,
/// no `user` on publications.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The token's subject: `publication.user`.
    pub user: Box<str>,
    /// The token's `channels`: exact names, or prefixes ending in `*`.
    pub channels: Box<[Box<str>]>,
}

impl Identity {
    /// Whether the token allows subscribing and publishing to `channel`.
    pub fn may_access(&self, channel: &str) -> bool {
        self.channels
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => **pattern == *channel,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_allow_exact_names_and_prefixes() {
        let who = Identity {
            user: "u".into(),
            channels: Box::new(["room:1".into(), "team:*".into()]),
        };
        assert!(who.may_access("room:1") && who.may_access("team:a") && who.may_access("team:"));
        assert!(!who.may_access("room:10") && !who.may_access("room:") && !who.may_access("teams"));
        let nobody = Identity {
            user: "u".into(),
            channels: Box::new([]),
        };
        assert!(
            !nobody.may_access("room:1"),
            "no channels claim allows none"
        );
    }
}
