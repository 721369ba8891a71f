//! Token authentication over real sockets (docs/protocol.md, "Authentication"): the token in
//! the upgrade's `Authorization` header or as the first frame, refusals and their counts,
//! expiry and refresh, connection ids among users, and no token in any log line. Tokens are
//! HS256, signed with a secret made for the run.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, Server, WAIT};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

/// A secret file for the run and the server using it.
struct AuthServer {
    server: Server,
    secret: String,
    _dir: tempfile::TempDir,
}

/// 64 hex digits from the standard library's per-process random keys.
fn random_secret() -> String {
    (0..4)
        .map(|_| format!("{:016x}", RandomState::new().build_hasher().finish()))
        .collect()
}

async fn auth_server(extra: &[(&str, &str)]) -> AuthServer {
    let dir = tempfile::tempdir().unwrap();
    let secret = random_secret();
    let path = dir.path().join("jwt-secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    let mut builder = Server::builder().env("AUTH_JWT_SECRET_FILE", path.display());
    for (name, value) in extra {
        builder = builder.env(name, value);
    }
    AuthServer {
        server: builder.start().await,
        secret,
        _dir: dir,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token of `claims` signed with `secret`.
fn sign(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    encode(&Header::default(), claims, &key).unwrap()
}

/// A token for `user`, valid for `seconds`, allowing `room:*`, signed with `secret`.
fn token(secret: &str, user: &str, seconds: u64) -> String {
    let claims = json!({"sub": user, "exp": now() + seconds, "channels": ["room:*"]});
    sign(secret, &claims)
}

impl AuthServer {
    /// A token of this server's secret.
    fn token(&self, user: &str, seconds: u64) -> String {
        token(&self.secret, user, seconds)
    }

    fn url(&self, id: &str) -> String {
        self.server.ws_url(&format!("/ws/chat/{id}"))
    }

    /// Upgrades with the token in the `Authorization` header.
    async fn connect_bearer(&self, id: &str, token: &str) -> Result<Client, tungstenite::Error> {
        let bearer = format!("Bearer {token}");
        Client::connect_with(&self.url(id), &[("authorization", &bearer)]).await
    }

    /// Upgrades without a token, then sends it as the first frame.
    async fn connect_first_frame(&self, id: &str, token: &str) -> Client {
        let mut client = Client::connect(&self.url(id)).await.expect("upgrade");
        client
            .send_json(&json!({"type": "authenticate", "token": token}))
            .await;
        client
    }

    async fn refusals(&self, reason: &str) -> f64 {
        let series = format!("websocket_auth_refusals_total{{reason=\"{reason}\"}}");
        self.server.metric(&series).await.unwrap_or(-1.0)
    }
}

/// Reads to the close: the goodbye said before it and the close code.
async fn goodbye(client: &mut Client, within: Duration) -> (Value, u16) {
    let (frame, seen) = client.recv_until_close(within).await;
    let goodbye = seen
        .into_iter()
        .find(|m| m["type"] == "goodbye")
        .expect("a goodbye before the close");
    let code = frame.map(|f| u16::from(f.code)).expect("a close frame");
    (goodbye, code)
}

async fn assert_alive(client: &mut Client) {
    client.send_json(&json!({"type": "ping", "id": "p"})).await;
    assert_eq!(client.recv_reply().await["type"], "pong");
}

/// The answer of an upgrade request refused before the upgrade: status and JSON body.
async fn refused_upgrade(server: &Server, id: &str, authorization: &str) -> (u16, Value) {
    refused_upgrade_with(server, id, &[("authorization", authorization)]).await
}

/// The same with `headers` added to the handshake's.
async fn refused_upgrade_with(server: &Server, id: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .get(server.url(&format!("/ws/chat/{id}")))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_bearer_token_opens_the_connection_with_its_user() {
    let s = auth_server(&[]).await;
    let mut client = s.connect_bearer("a1", &s.token("alice", 60)).await.unwrap();
    let hello = client.recv_json().await;
    assert_eq!(hello["type"], "connection_established");
    assert_eq!(hello["user"], "alice");
    assert_eq!(hello["connectionId"], "a1");
    assert_alive(&mut client).await;
}

#[tokio::test]
async fn a_bad_bearer_token_is_answered_401_and_not_upgraded() {
    let s = auth_server(&[]).await;
    let foreign = token(&random_secret(), "alice", 60);
    let cases = [
        (format!("Bearer {foreign}"), "bad_signature"),
        ("Bearer not-a-jwt".to_owned(), "malformed"),
        ("Basic YWxpY2U6cHc=".to_owned(), "malformed"),
    ];
    for (authorization, reason) in &cases {
        let before = s.refusals(reason).await;
        let (status, body) = refused_upgrade(&s.server, "x", authorization).await;
        assert_eq!((status, body), (401, json!({"error": "unauthorized"})));
        assert_eq!(s.refusals(reason).await, before + 1.0, "{reason}");
    }
    let rejected = "websocket_connections_rejected_total{reason=\"unauthorized\"}";
    assert_eq!(s.server.metric(rejected).await, Some(3.0));
    assert_eq!(
        s.server.metric("websocket_connections_total").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_forged_origin_is_refused_before_its_token_is_read() {
    let s = auth_server(&[("ALLOWED_ORIGINS", "https://app.example")]).await;
    let forged = token(&random_secret(), "alice", 60);
    let valid = s.token("alice", 60);
    for token in [&forged, &valid] {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("origin", "https://evil.example"),
        ];
        let (status, body) = refused_upgrade_with(&s.server, "o", &headers).await;
        assert_eq!((status, body), (403, json!({"error": "forbidden_origin"})));
    }
    // Neither token was verified: no auth refusal, and the refusals say why.
    assert_eq!(s.refusals("bad_signature").await, 0.0);
    let rejected =
        |reason: &str| format!("websocket_connections_rejected_total{{reason=\"{reason}\"}}");
    assert_eq!(
        s.server.metric(&rejected("forbidden_origin")).await,
        Some(2.0)
    );
    assert_eq!(s.server.metric(&rejected("unauthorized")).await, Some(0.0));
    // The allowed Origin with the forged token is the token's refusal.
    let bearer = format!("Bearer {forged}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("origin", "https://app.example"),
    ];
    let (status, _) = refused_upgrade_with(&s.server, "o", &headers).await;
    assert_eq!(status, 401);
    assert_eq!(s.refusals("bad_signature").await, 1.0);
}

#[tokio::test]
async fn a_first_frame_token_comes_before_the_welcome() {
    let s = auth_server(&[]).await;
    let mut client = s.connect_first_frame("b1", &s.token("bob", 60)).await;
    let hello = client.recv_json().await;
    assert_eq!(hello["type"], "connection_established", "{hello}");
    assert_eq!(hello["user"], "bob");
    assert_alive(&mut client).await;
}

#[tokio::test]
async fn a_bad_first_frame_is_goodbye_unauthorized_1008() {
    let s = auth_server(&[]).await;
    let expired = sign(&s.secret, &json!({"sub": "bob", "exp": now() - 10}));
    let frames = [
        (json!({"type": "authenticate", "token": expired}), "expired"),
        (
            json!({"type": "authenticate", "token": "x.y.z"}),
            "malformed",
        ),
        (json!({"type": "ping"}), "missing"),
    ];
    for (frame, reason) in frames {
        let mut client = Client::connect(&s.url("c1")).await.unwrap();
        client.send_json(&frame).await;
        let (bye, code) = goodbye(&mut client, WAIT).await;
        assert_eq!(bye["reason"], "unauthorized", "{frame}");
        assert_eq!(bye["reconnect"], false);
        assert_eq!(code, 1008);
        assert_eq!(s.refusals(reason).await, 1.0, "{reason}");
    }
}

#[tokio::test]
async fn no_token_within_auth_timeout_is_goodbye_unauthorized() {
    let s = auth_server(&[("AUTH_TIMEOUT", "300")]).await;
    let mut client = Client::connect(&s.url("t1")).await.unwrap();
    let (frame, seen) = client.recv_until_close(WAIT).await;
    let types: Vec<&Value> = seen.iter().map(|m| &m["type"]).collect();
    assert_eq!(
        types,
        [&json!("goodbye")],
        "nothing but the goodbye: {seen:?}"
    );
    assert_eq!(seen[0]["reason"], "unauthorized");
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(1008));
    assert_eq!(s.refusals("timeout").await, 1.0);
}

#[tokio::test]
async fn an_expiring_token_ends_the_connection_unless_refreshed() {
    let s = auth_server(&[]).await;
    let mut lapsing = s.connect_bearer("e1", &s.token("erin", 2)).await.unwrap();
    lapsing.recv_json().await;
    let mut refreshed = s.connect_first_frame("e2", &s.token("erin", 2)).await;
    refreshed.recv_json().await;
    refreshed
        .send_json(&json!({"type": "authenticate", "token": s.token("erin", 60)}))
        .await;

    let (bye, code) = goodbye(&mut lapsing, Duration::from_secs(6)).await;
    assert_eq!(bye["reason"], "token_expired");
    assert_eq!(bye["reconnect"], true);
    assert_eq!(code, 1008);
    // Both first tokens had the same `exp`: a little past it, only the refresh keeps one alive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_alive(&mut refreshed).await;
    let disconnects = "websocket_disconnects_total{reason=\"token_expired\"}";
    s.server.wait_metric(disconnects, |n| n == 1.0).await;
}

#[tokio::test]
async fn a_refresh_with_another_users_token_ends_the_connection() {
    let s = auth_server(&[]).await;
    let mut client = s.connect_first_frame("f1", &s.token("frank", 60)).await;
    client.recv_json().await;
    client
        .send_json(&json!({"type": "authenticate", "token": s.token("mallory", 60)}))
        .await;
    let (bye, code) = goodbye(&mut client, WAIT).await;
    assert_eq!((bye["reason"].as_str(), code), (Some("unauthorized"), 1008));
    assert_eq!(s.refusals("user_changed").await, 1.0);
}

#[tokio::test]
async fn an_id_is_replaced_only_by_its_own_user() {
    let s = auth_server(&[]).await;
    let mut alice = s
        .connect_bearer("shared", &s.token("alice", 60))
        .await
        .unwrap();
    alice.recv_json().await;

    // Bob's header token: refused before the upgrade.
    let bearer = format!("Bearer {}", s.token("bob", 60));
    let (status, body) = refused_upgrade(&s.server, "shared", &bearer).await;
    assert_eq!(
        (status, body),
        (409, json!({"error": "connection_id_in_use"}))
    );
    // Bob's first-frame token: known only after the upgrade, so a goodbye.
    let mut bob = s.connect_first_frame("shared", &s.token("bob", 60)).await;
    let (bye, code) = goodbye(&mut bob, WAIT).await;
    assert_eq!(
        (bye["reason"].as_str(), code),
        (Some("connection_id_in_use"), 1008)
    );
    assert_alive(&mut alice).await;

    // Alice's second connection with the id replaces her first.
    let mut again = s.connect_first_frame("shared", &s.token("alice", 60)).await;
    assert_eq!(again.recv_json().await["user"], "alice");
    let (bye, _) = goodbye(&mut alice, WAIT).await;
    assert_eq!(bye["reason"], "replaced");
    assert_alive(&mut again).await;
}

#[tokio::test]
async fn tokens_never_reach_the_logs() {
    let s = auth_server(&[("LOG_LEVEL", "trace"), ("AUTH_TIMEOUT", "300")]).await;
    let header_token = s.token("logan", 60);
    let frame_token = s.token("logan", 61);
    let refresh_token = s.token("logan", 62);
    let foreign = token(&random_secret(), "logan", 63);

    let mut by_header = s.connect_bearer("l1", &header_token).await.unwrap();
    by_header.recv_json().await;
    let mut by_frame = s.connect_first_frame("l2", &frame_token).await;
    by_frame.recv_json().await;
    by_frame
        .send_json(&json!({"type": "authenticate", "token": refresh_token}))
        .await;
    assert_alive(&mut by_frame).await;
    refused_upgrade(&s.server, "l3", &format!("Bearer {foreign}")).await;
    let mut refused = s.connect_first_frame("l4", &foreign).await;
    goodbye(&mut refused, WAIT).await;
    drop((by_header, by_frame));

    let output = s.server.output();
    assert!(
        output.contains("authentication refused"),
        "the refusals are logged:\n{output}"
    );
    for token in [&header_token, &frame_token, &refresh_token, &foreign] {
        // Each part on its own: a token cut at its dots must not leak either.
        for part in token.split('.') {
            assert!(
                !output.contains(part),
                "a token part reached the logs: {part}\n{output}"
            );
        }
    }
}
