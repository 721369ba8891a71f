//! The Redis engine's settings (`BROKER=redis`, issue 17): where Redis is (`REDIS_URL`, TLS
//! with `rediss://`), its password from a file (under systemd a `LoadCredential=` file), the
//! prefix of every key, the timeout of one command and the interval of the position checks.
//! The password never appears in the effective configuration, in errors or in debug prints.

use std::fmt;
use std::time::Duration;

use clap::Args;
use redis::{ConnectionInfo, IntoConnectionInfo};

use super::validator::{ConfigError, Validator};
use super::values::millis_in;

/// Longest `REDIS_KEY_PREFIX`, in bytes.
const MAX_PREFIX: usize = 64;

/// The Redis settings as text.
#[derive(Debug, Clone, Args)]
pub struct RawRedisSettings {
    /// Redis for BROKER=redis: redis://[user:password@]host:port[/db], rediss:// for TLS
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// File holding the Redis password (trailing newline trimmed); not with a password in REDIS_URL
    #[arg(long, env = "REDIS_PASSWORD_FILE", default_value = "")]
    pub redis_password_file: String,
    /// Prefix of every Redis key and pub/sub topic, so deployments can share one Redis
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "cs")]
    pub redis_key_prefix: String,
    /// Milliseconds for one Redis command; past it the request fails broker_unavailable
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "2000")]
    pub redis_timeout: String,
    /// Milliseconds between checks of each subscribed channel's newest offset in Redis
    #[arg(long, env = "REDIS_POSITION_CHECK_INTERVAL", default_value = "5000")]
    pub redis_position_check_interval: String,
}

/// The validated Redis settings.
#[derive(Clone)]
pub struct RedisConfig {
    /// `REDIS_URL` as given (it may hold a password: print it with [`masked_url`]).
    pub url: String,
    /// The password read from `REDIS_PASSWORD_FILE`.
    pub password: Option<String>,
    pub password_file: String,
    pub key_prefix: String,
    pub timeout: Duration,
    pub position_check_interval: Duration,
}

impl fmt::Debug for RedisConfig {
    /// Neither the URL's password nor the file's appears.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &masked_url(&self.url))
            .field("password_file", &self.password_file)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("position_check_interval", &self.position_check_interval)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Validates the settings; the URL and the password file only when `used` (BROKER=redis).
    pub(super) fn check(
        raw: &RawRedisSettings,
        used: bool,
        v: &mut Validator,
    ) -> Option<RedisConfig> {
        // Not `v.check`: its error would quote the value, password included.
        let url_password = match used.then(|| url_has_password(raw.redis_url.trim())) {
            None => Some(false),
            Some(Ok(has_password)) => Some(has_password),
            Some(Err(problem)) => {
                v.errors.push(ConfigError {
                    variable: "REDIS_URL",
                    value: masked_url(&raw.redis_url),
                    problem,
                });
                None
            }
        };
        let file = raw.redis_password_file.trim();
        let password = if used && !file.is_empty() {
            v.check("REDIS_PASSWORD_FILE", file, |path| {
                if url_password == Some(true) {
                    return Err("REDIS_URL already holds a password: give one or the other".into());
                }
                read_password(path).map(Some)
            })
        } else {
            Some(None)
        };
        let key_prefix = v.check("REDIS_KEY_PREFIX", &raw.redis_key_prefix, key_prefix);
        let timeout = v.check("REDIS_TIMEOUT", &raw.redis_timeout, millis_in(10, 600_000));
        let position_check_interval = v.check(
            "REDIS_POSITION_CHECK_INTERVAL",
            &raw.redis_position_check_interval,
            millis_in(100, 3_600_000),
        );
        Some(RedisConfig {
            url: raw.redis_url.trim().to_owned(),
            password: password?,
            password_file: file.to_owned(),
            key_prefix: key_prefix?,
            timeout: timeout?,
            position_check_interval: position_check_interval?,
        })
    }

    /// Where and how to connect: the URL with the file's password, when one was given.
    pub fn connection_info(&self) -> redis::RedisResult<ConnectionInfo> {
        let info = self.url.as_str().into_connection_info()?;
        Ok(match &self.password {
            Some(password) => {
                let settings = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(settings)
            }
            None => info,
        })
    }
}

/// Whether a valid `redis://` or `rediss://` URL carries a password.
fn url_has_password(url: &str) -> Result<bool, String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("expected a redis:// or rediss:// URL".into());
    }
    let info = url
        .into_connection_info()
        .map_err(|e| format!("not a Redis URL: {}", masked_error(&e.to_string(), url)))?;
    Ok(info.redis_settings().password().is_some())
}

/// An error text with the URL's password, if it quotes it, masked.
fn masked_error(text: &str, url: &str) -> String {
    match password_span(url) {
        Some(span) => text.replace(&url[span], "***"),
        None => text.to_owned(),
    }
}

/// The password file's content, its trailing line end trimmed.
fn read_password(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("the file is empty".into());
    }
    Ok(password.to_owned())
}

fn key_prefix(s: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.:".contains(c);
    if s.is_empty() || s.len() > MAX_PREFIX || !s.chars().all(allowed) {
        return Err(format!(
            "expected 1 to {MAX_PREFIX} characters of A-Z a-z 0-9 _ - . :"
        ));
    }
    Ok(s.to_owned())
}

/// Where the password sits in `scheme://user:password@host...`, if it has one.
fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    let colon = url[start..at].find(':')? + start;
    (colon + 1 < at).then_some(colon + 1..at)
}

/// `REDIS_URL` with its password, if any, replaced by `***`.
pub fn masked_url(url: &str) -> String {
    match password_span(url) {
        Some(span) => format!("{}***{}", &url[..span.start], &url[span.end..]),
        None => url.to_owned(),
    }
}

impl fmt::Display for RedisConfig {
    /// One `VARIABLE=value` line per setting; the password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "REDIS_URL={}", masked_url(&self.url))?;
        writeln!(f, "REDIS_PASSWORD_FILE={}", self.password_file)?;
        writeln!(f, "REDIS_KEY_PREFIX={}", self.key_prefix)?;
        writeln!(f, "REDIS_TIMEOUT={}", self.timeout.as_millis())?;
        writeln!(
            f,
            "REDIS_POSITION_CHECK_INTERVAL={}",
            self.position_check_interval.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str, file: &str) -> RawRedisSettings {
        RawRedisSettings {
            redis_url: url.into(),
            redis_password_file: file.into(),
            redis_key_prefix: "cs".into(),
            redis_timeout: "2000".into(),
            redis_position_check_interval: "5000".into(),
        }
    }

    fn check(raw: &RawRedisSettings) -> Result<RedisConfig, Vec<&'static str>> {
        let mut v = Validator { errors: Vec::new() };
        let config = RedisConfig::check(raw, true, &mut v);
        if v.errors.is_empty() {
            Ok(config.unwrap())
        } else {
            Err(v.errors.iter().map(|e| e.variable).collect())
        }
    }

    #[test]
    fn the_password_is_masked_everywhere_it_could_show() {
        let config = check(&raw("rediss://app:s3cret@cache.example:6380/0", "")).unwrap();
        let shown = format!("{config}{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("REDIS_URL=rediss://app:***@cache.example:6380/0\n"));
        assert_eq!(
            masked_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(masked_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(masked_url("redis://user@h:1"), "redis://user@h:1");
        let mut v = Validator { errors: Vec::new() };
        RedisConfig::check(&raw("redis://app:s3cret@h:port", ""), true, &mut v);
        let shown = v.errors[0].to_string();
        assert!(
            shown.starts_with("REDIS_URL=") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn the_password_comes_from_the_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("redis-password");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.to_str().unwrap();
        let config = check(&raw("redis://127.0.0.1:6379", path)).unwrap();
        let info = config.connection_info().unwrap();
        assert_eq!(info.redis_settings().password(), Some("from-file"));
        assert!(!format!("{config}{config:?}").contains("from-file"));
        assert_eq!(
            check(&raw("redis://:pw@127.0.0.1:6379", path)).unwrap_err(),
            ["REDIS_PASSWORD_FILE"]
        );
        let missing = dir.path().join("absent");
        let missing = raw("redis://h:1", missing.to_str().unwrap());
        assert_eq!(check(&missing).unwrap_err(), ["REDIS_PASSWORD_FILE"]);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let mut bad = raw("http://h:1", "");
        bad.redis_key_prefix = "a b".into();
        bad.redis_timeout = "0".into();
        bad.redis_position_check_interval = "soon".into();
        assert_eq!(
            check(&bad).unwrap_err(),
            [
                "REDIS_URL",
                "REDIS_KEY_PREFIX",
                "REDIS_TIMEOUT",
                "REDIS_POSITION_CHECK_INTERVAL"
            ]
        );
        let mut v = Validator { errors: Vec::new() };
        assert!(RedisConfig::check(&raw("http://h:1", ""), false, &mut v).is_some());
        assert!(
            v.errors.is_empty(),
            "the URL is checked only with BROKER=redis"
        );
    }
}
