//! Authentication settings: the key that verifies tokens, read from its file at start-up
//! (under systemd, a `LoadCredential=` file), and `AUTH_TIMEOUT`. Without a key file,
//! authentication is off. The key never appears in the effective configuration or in errors;
//! the file names do.

use std::fmt;
use std::time::Duration;

use clap::Args;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::values::millis_in;

/// Shortest HS256 secret accepted: RFC 7518 section 3.2 asks for a key of at least the
/// hash's size (256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// The authentication settings as text.
#[derive(Debug, Clone, Args)]
pub struct RawAuthSettings {
    /// File holding the HS256 secret; turns token authentication on
    #[arg(long, env = "AUTH_JWT_SECRET_FILE", default_value = "")]
    pub auth_jwt_secret_file: String,
    /// File holding an RS256 or ES256 public key (PEM); turns token authentication on
    #[arg(long, env = "AUTH_JWT_PUBLIC_KEY_FILE", default_value = "")]
    pub auth_jwt_public_key_file: String,
    /// Milliseconds for the first frame `authenticate` when the upgrade carried no token
    #[arg(long, env = "AUTH_TIMEOUT", default_value = "5000")]
    pub auth_timeout: String,
}

/// The key tokens are verified with, and the one algorithm it is used with.
#[derive(Clone)]
pub struct AuthKey {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
    /// The variable that named the file, and the file.
    pub source: (&'static str, String),
}

impl fmt::Debug for AuthKey {
    /// The key itself stays out of every debug print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("algorithm", &self.algorithm)
            .field("file", &self.source.1)
            .finish_non_exhaustive()
    }
}

/// Validated authentication settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `None`: authentication is off.
    pub key: Option<AuthKey>,
    pub timeout: Duration,
}

const SECRET_VAR: &str = "AUTH_JWT_SECRET_FILE";
const PUBLIC_KEY_VAR: &str = "AUTH_JWT_PUBLIC_KEY_FILE";

/// The key setting to check: the variable that names the key file, its value, and the
/// parser that reads the file (both variables set is an error naming both).
pub(super) fn key_setting(
    raw: &RawAuthSettings,
) -> (
    &'static str,
    &str,
    impl FnOnce(&str) -> Result<Option<AuthKey>, String>,
) {
    let secret = raw.auth_jwt_secret_file.trim();
    let public = raw.auth_jwt_public_key_file.trim();
    let both = !secret.is_empty() && !public.is_empty();
    let (variable, value) = if public.is_empty() || both {
        (SECRET_VAR, secret)
    } else {
        (PUBLIC_KEY_VAR, public)
    };
    let parse = move |path: &str| match (path.is_empty(), both, variable) {
        (true, _, _) => Ok(None),
        (_, true, _) => Err(format!(
            "{SECRET_VAR} and {PUBLIC_KEY_VAR} are both set: set only one"
        )),
        (_, _, SECRET_VAR) => secret_key(path).map(Some),
        _ => public_key(path).map(Some),
    };
    (variable, value, parse)
}

/// The range of `AUTH_TIMEOUT`.
pub(super) fn timeout(value: &str) -> Result<Duration, String> {
    millis_in(100, 60_000)(value)
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the file {path}: {e}"))
}

fn secret_key(path: &str) -> Result<AuthKey, String> {
    let bytes = read(path)?;
    // `echo secret > file` leaves a newline that is no part of the secret.
    let secret = bytes.trim_ascii_end();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret in {path} has {} bytes; HS256 needs at least {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    Ok(AuthKey {
        algorithm: Algorithm::HS256,
        decoding: DecodingKey::from_secret(secret),
        source: (SECRET_VAR, path.to_owned()),
    })
}

fn public_key(path: &str) -> Result<AuthKey, String> {
    let pem = read(path)?;
    let (algorithm, decoding) = DecodingKey::from_rsa_pem(&pem)
        .map(|key| (Algorithm::RS256, key))
        .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|key| (Algorithm::ES256, key)))
        .map_err(|_| format!("{path} holds no RSA or EC (P-256) public key in PEM"))?;
    Ok(AuthKey {
        algorithm,
        decoding,
        source: (PUBLIC_KEY_VAR, path.to_owned()),
    })
}

impl fmt::Display for AuthConfig {
    /// The `check-config` lines: the files' names, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = |var: &str| match &self.key {
            Some(AuthKey { source, .. }) if source.0 == var => source.1.as_str(),
            _ => "",
        };
        writeln!(f, "{SECRET_VAR}={}", file(SECRET_VAR))?;
        writeln!(f, "{PUBLIC_KEY_VAR}={}", file(PUBLIC_KEY_VAR))?;
        writeln!(f, "AUTH_TIMEOUT={}", self.timeout.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn raw(secret: &str, public: &str) -> RawAuthSettings {
        RawAuthSettings {
            auth_jwt_secret_file: secret.into(),
            auth_jwt_public_key_file: public.into(),
            auth_timeout: "5000".into(),
        }
    }

    /// The variable checked and the key or the problem.
    fn key(secret: &str, public: &str) -> (&'static str, Result<Option<AuthKey>, String>) {
        let raw = raw(secret, public);
        let (variable, value, parse) = key_setting(&raw);
        (variable, parse(value))
    }

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        file
    }

    #[test]
    fn off_without_files() {
        assert!(matches!(key("", ""), (_, Ok(None))));
        assert_eq!(timeout("5000"), Ok(Duration::from_secs(5)));
        assert!(timeout("0").is_err());
    }

    #[test]
    fn a_secret_file_turns_hs256_on_and_is_never_shown() {
        let secret = file(b"0123456789abcdef0123456789abcdef\n");
        let path = secret.path().to_str().unwrap();
        let (variable, key) = key(path, "");
        let key = key.unwrap().unwrap();
        assert_eq!((variable, key.algorithm), (SECRET_VAR, Algorithm::HS256));
        let config = AuthConfig {
            key: Some(key),
            timeout: Duration::from_secs(5),
        };
        let shown = format!("{config}");
        assert!(
            shown.contains(&format!("AUTH_JWT_SECRET_FILE={path}\n")),
            "{shown}"
        );
        assert!(shown.contains("AUTH_JWT_PUBLIC_KEY_FILE=\n"), "{shown}");
        assert!(
            !shown.contains("0123456789abcdef"),
            "the secret is never shown"
        );
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn both_files_is_an_error_naming_both_variables() {
        let secret = file(&[b'x'; 40]);
        let path = secret.path().to_str().unwrap();
        let problem = key(path, path).1.unwrap_err();
        assert!(problem.contains(SECRET_VAR) && problem.contains(PUBLIC_KEY_VAR));
    }

    #[test]
    fn unreadable_short_or_wrong_files_are_named() {
        let missing = "/nonexistent/jwt-secret";
        let (variable, result) = key(missing, "");
        assert_eq!(variable, SECRET_VAR);
        assert!(result.unwrap_err().contains(missing));
        let short = file(b"short\n");
        let problem = key(short.path().to_str().unwrap(), "").1.unwrap_err();
        assert!(problem.contains("at least 32"), "{problem}");
        let not_pem = file(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n");
        let (variable, result) = key("", not_pem.path().to_str().unwrap());
        assert_eq!(variable, PUBLIC_KEY_VAR);
        assert!(result.unwrap_err().contains("no RSA or EC"));
    }
}
