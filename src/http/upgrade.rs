//! The server side of the WebSocket opening handshake (RFC 6455 section 4.2): checks an
//! upgrade request as 4.2.1 asks (a key that is base64 of 16 bytes, version 13 or `426`
//! naming it as 4.4 asks, no body), answers `101 Switching Protocols` with the accept key, and
//! hands the connection's own TCP stream to the caller once hyper lets go of it.
//!
//! axum's `WebSocketUpgrade` does the same checks but hides the stream behind its wrapper, a
//! boxed hyper `Upgraded` and tokio-tungstenite's waker proxy; [`crate::ws`] drives
//! tungstenite on the bare `TcpStream` instead, which costs less CPU per message and lets it
//! write all the answers of one wake-up in one system call.

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::{debug, error};

use super::response::json_error;

/// A valid WebSocket upgrade request, not yet answered.
pub struct UpgradeRequest {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade we can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAnUpgrade {
    /// Not an HTTP/1.1 `GET`.
    Method,
    /// `Connection` lacks the `upgrade` token, or `Upgrade` is not `websocket`.
    Headers,
    /// `Sec-WebSocket-Version` is not 13.
    Version,
    /// `Sec-WebSocket-Key` missing, or not the base64 of 16 bytes.
    Key,
    /// The request has a body (`Content-Length` above 0, or `Transfer-Encoding`).
    Body,
    /// The HTTP connection cannot be taken over (not served by hyper with upgrades).
    NotUpgradable,
}

impl<S: Send + Sync> FromRequestParts<S> for UpgradeRequest {
    type Rejection = NotAnUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotAnUpgrade> {
        if parts.method != Method::GET || parts.version != Version::HTTP_11 {
            return Err(NotAnUpgrade::Method);
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade")
            || !has_token(headers, header::UPGRADE, "websocket")
        {
            return Err(NotAnUpgrade::Headers);
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(NotAnUpgrade::Version);
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|key| is_valid_key(key.as_bytes()))
            .ok_or(NotAnUpgrade::Key)?
            .clone();
        if has_body(headers) {
            return Err(NotAnUpgrade::Body);
        }
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotAnUpgrade::NotUpgradable)?;
        Ok(UpgradeRequest { key, on_upgrade })
    }
}

/// Whether `key` is the base64 of exactly 16 bytes (RFC 6455 4.2.1, item 5): 22 characters
/// of the alphabet, the last holding only 2 bits of data, then `==`.
fn is_valid_key(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let Some((data, b"==")) = key.split_last_chunk::<2>() else {
        return false;
    };
    let value = |c: &u8| ALPHABET.iter().position(|a| a == c);
    data.len() == 22
        && data.iter().all(|c| value(c).is_some())
        && data
            .last()
            .and_then(value)
            .is_some_and(|last| last & 0b1111 == 0)
}

/// Whether the request announces a body: an upgrade request has none (RFC 6455 4.1), and a
/// body would be read as the first WebSocket frames.
fn has_body(headers: &HeaderMap) -> bool {
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0");
    content_length || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Whether the comma-separated header `name` lists `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// The TCP stream of an upgraded connection, and the bytes hyper read past the request.
pub struct Upgraded {
    pub stream: TcpStream,
    pub already_read: Vec<u8>,
}

impl UpgradeRequest {
    /// Answers `101` and runs `serve` on the upgraded stream in a task of its own. If the
    /// upgrade fails (the client went away before taking the `101`), `serve` is dropped
    /// unrun, and with it whatever it holds (the connection's reserved slot).
    pub fn accept<Serve, Served>(self, serve: Serve) -> Response
    where
        Serve: FnOnce(Upgraded) -> Served + Send + 'static,
        Served: Future<Output = ()> + Send + 'static,
    {
        let UpgradeRequest { key, on_upgrade } = self;
        // Combinators, not an `async` block: a block would keep `serve` (what the session is
        // made of) captured beside the session for the connection's whole life; `then` holds
        // one, then the other.
        let task = take_over(on_upgrade).then(|upgraded| match upgraded {
            Some(upgraded) => Either::Left(serve(upgraded)),
            None => Either::Right(std::future::ready(())),
        });
        tokio::spawn(task);
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header value");
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response()
    }
}

/// Waits for hyper to hand the connection over, and unwraps it down to the TCP stream.
async fn take_over(on_upgrade: OnUpgrade) -> Option<Upgraded> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Some(Upgraded {
            stream: parts.io.into_inner(),
            already_read: parts.read_buf.to_vec(),
        }),
        Err(_) => {
            // Only a server built on something other than `server::serve` gets here.
            error!("upgraded connection is not a TCP stream served by hyper; dropped");
            None
        }
    }
}

/// A malformed handshake (bad key, a body) gets `400 bad_handshake`; any other request to a
/// WebSocket route that is not a valid upgrade gets `426`, naming the version we speak when
/// the client asked for another one (RFC 6455 4.4).
impl IntoResponse for NotAnUpgrade {
    fn into_response(self) -> Response {
        debug!(why = ?self, "not a WebSocket upgrade");
        if matches!(self, NotAnUpgrade::Key | NotAnUpgrade::Body) {
            return json_error(StatusCode::BAD_REQUEST, "bad_handshake");
        }
        let mut response = json_error(StatusCode::UPGRADE_REQUIRED, "upgrade_required");
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if self == NotAnUpgrade::Version {
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn tokens_are_found_in_lists_whatever_their_case() {
        let h = headers(&[(header::CONNECTION, "keep-alive, Upgrade")]);
        assert!(has_token(&h, header::CONNECTION, "upgrade"));
        let h = headers(&[(header::UPGRADE, "WebSocket")]);
        assert!(has_token(&h, header::UPGRADE, "websocket"));
    }

    #[test]
    fn a_token_must_match_a_whole_item() {
        let h = headers(&[(header::CONNECTION, "upgrades")]);
        assert!(!has_token(&h, header::CONNECTION, "upgrade"));
        assert!(!has_token(&HeaderMap::new(), header::CONNECTION, "upgrade"));
    }

    #[test]
    fn keys_must_be_base64_of_16_bytes() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(b"not base64 at all!"));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j"), "15 bytes");
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="[..23].as_ref()));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ==="));
        assert!(
            !is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="),
            "bits past the 16th byte"
        );
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
    }

    #[test]
    fn a_body_is_announced_by_length_or_encoding() {
        assert!(!has_body(&HeaderMap::new()));
        assert!(!has_body(&headers(&[(header::CONTENT_LENGTH, "0")])));
        assert!(has_body(&headers(&[(header::CONTENT_LENGTH, "5")])));
        assert!(has_body(&headers(&[(
            header::TRANSFER_ENCODING,
            "chunked"
        )])));
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
