//! The public HTTP surface over a real socket: health and readiness, the test page and its
//! assets, JSON errors (400, 404, 405, 426), the security headers on every response, the Origin
//! check, and `check-config`.

mod common;

use common::{Client, Server, refusal, server_binary};
use serde_json::json;

#[tokio::test]
async fn health_and_ready() {
    let server = Server::start(&[]).await;
    let (status, health) = server.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"], 0);
    assert_eq!(health["serverId"], "test");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptimeSeconds"].is_u64());
    assert_eq!(
        server.get_json("/ready").await,
        (200, json!({"status": "ready"}))
    );

    let (_client, _) = Client::chat(&server, "counted").await;
    assert_eq!(server.get_json("/health").await.1["connections"], 1);
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let server = Server::start(&[("HSTS_MAX_AGE", "31536000")]).await;
    for path in [
        "/",
        "/app.js",
        "/app.css",
        "/health",
        "/ready",
        "/nope",
        "/ws/chat/bad%20id",
    ] {
        let response = server.get(path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(
            headers["strict-transport-security"], "max-age=31536000; includeSubDomains",
            "{path}"
        );
    }
    let default = Server::start(&[]).await;
    assert!(
        default
            .get("/health")
            .await
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
}

#[tokio::test]
async fn test_page_is_self_contained() {
    let server = Server::start(&[]).await;
    let page = server.get("/").await;
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for id in [
        "connection-id",
        "connect",
        "message",
        "send-message",
        "send-ping",
        "close-code",
        "log",
        "room",
        "join",
        "leave",
        "chat-messages",
        "chat-text",
        "chat-send",
        "drop",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "element #{id}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "nothing inline (CSP)"
    );
    let script = server.get("/app.js").await;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("/ws/chat/"));
}

#[tokio::test]
async fn json_errors_without_internals() {
    let server = Server::start(&[]).await;
    assert_eq!(
        server.get_json("/nope").await,
        (404, json!({"error": "not_found"}))
    );
    let response = server
        .http
        .post(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "method_not_allowed"})
    );
    // A plain GET of the upgrade route.
    let response = server.get("/ws/chat/alice").await;
    assert_eq!(response.status(), 426);
    assert_eq!(response.headers()["upgrade"], "websocket");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"error": "upgrade_required"})
    );
    // Echo is off by default.
    assert_eq!(server.get_json("/ws/echo").await.0, 404);
}

#[tokio::test]
async fn invalid_connection_ids_get_400() {
    let server = Server::start(&[]).await;
    let too_long = "a".repeat(65);
    for id in ["bad%20id", "a.b", "%C3%A9", "a/b", too_long.as_str(), ""] {
        let (status, body, _) = refusal(&server.ws_url(&format!("/ws/chat/{id}")), &[]).await;
        assert_eq!(
            (status, body),
            (400, json!({"error": "invalid_connection_id"})),
            "id {id:?}"
        );
    }
    let (status, _, _) = refusal(&server.ws_url("/ws/chat"), &[]).await;
    assert_eq!(status, 400);
    let rejected = server
        .metric(r#"websocket_connections_rejected_total{reason="invalid_connection_id"}"#)
        .await;
    assert_eq!(rejected, Some(7.0));
    // The longest valid id is accepted.
    Client::chat(&server, &"a".repeat(64)).await;
}

#[tokio::test]
async fn origin_check_default_same_origin() {
    let server = Server::start(&[]).await;
    let url = server.ws_url("/ws/chat/o1");
    let host = format!("127.0.0.1:{}", server.port);
    // No Origin: a non-browser client.
    assert!(Client::connect(&url).await.is_ok());
    let same = format!("http://{host}");
    assert!(
        Client::connect_with(&server.ws_url("/ws/chat/o2"), &[("origin", &same)])
            .await
            .is_ok()
    );
    let (status, body, _) = refusal(&url, &[("origin", "https://evil.example")]).await;
    assert_eq!((status, body), (403, json!({"error": "forbidden_origin"})));
    let (status, _, _) = refusal(&url, &[("origin", "null")]).await;
    assert_eq!(status, 403);
    // The same host and port over another scheme is another origin.
    let https = format!("https://{host}");
    assert_eq!(refusal(&url, &[("origin", &https)]).await.0, 403);
    assert_eq!(
        server
            .metric(r#"websocket_connections_rejected_total{reason="forbidden_origin"}"#)
            .await,
        Some(3.0)
    );
}

#[tokio::test]
async fn origin_check_with_a_list_and_a_wildcard() {
    let server = Server::start(&[(
        "ALLOWED_ORIGINS",
        "https://app.example, https://admin.example:8443",
    )])
    .await;
    let url = server.ws_url("/ws/chat/o");
    assert!(
        Client::connect_with(&url, &[("origin", "https://APP.example")])
            .await
            .is_ok()
    );
    assert!(
        Client::connect_with(&url, &[("origin", "https://admin.example:8443")])
            .await
            .is_ok()
    );
    assert_eq!(
        refusal(&url, &[("origin", "https://admin.example")])
            .await
            .0,
        403
    );
    let same = format!("http://127.0.0.1:{}", server.port);
    assert_eq!(
        refusal(&url, &[("origin", &same)]).await.0,
        403,
        "a list replaces same-origin"
    );

    let any = Server::start(&[("ALLOWED_ORIGINS", "*")]).await;
    assert!(
        Client::connect_with(
            &any.ws_url("/ws/chat/o"),
            &[("origin", "https://anything.example")]
        )
        .await
        .is_ok()
    );
}

fn check_config(vars: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(server_binary())
        .arg("check-config")
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs")
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let out = check_config(&[
        ("PORT", "4000"),
        ("SERVER_ID", "green"),
        ("ALLOWED_ORIGINS", "https://a.example/"),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "PORT=4000",
        "HOST=0.0.0.0",
        "MAX_CONNECTIONS=10000",
        "HEARTBEAT_INTERVAL=30000",
        "CONNECTION_TIMEOUT=300000",
        "LOG_LEVEL=info",
        "MAX_MESSAGE_BYTES=65536",
        "ALLOWED_ORIGINS=https://a.example",
        "METRICS_ADDR=127.0.0.1:9464",
        "SERVER_ID=green",
        "ENABLE_ECHO=false",
        "MAX_HEADER_BYTES=8192",
        "MAX_PENDING_HTTP=1024",
        "MAX_PENDING_HTTP_PER_IP=32",
        "CLIENT_IPV6_PREFIX=64",
        "PUBLIC_ORIGIN=",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }
}

#[test]
fn check_config_names_every_bad_variable() {
    let out = check_config(&[
        ("PORT", "http"),
        ("MAX_CONNECTIONS", "0"),
        ("TRUSTED_PROXIES", "10.0.0.0/40"),
        ("ENABLE_ECHO", "yes please"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stderr).unwrap();
    for name in [
        "PORT=\"http\"",
        "MAX_CONNECTIONS=\"0\"",
        "TRUSTED_PROXIES=",
        "ENABLE_ECHO=",
    ] {
        assert!(text.contains(name), "{name} not named in:\n{text}");
    }
    assert!(text.contains("4 bad variables"), "{text}");
    assert!(out.stdout.is_empty());
}

#[test]
fn help_and_version() {
    let help = std::process::Command::new(server_binary())
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("check-config") && text.contains("[env: HEARTBEAT_INTERVAL=]"),
        "{text}"
    );
    let version = std::process::Command::new(server_binary())
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("concurrent-socket {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn serving_with_a_bad_variable_fails_at_start() {
    let out = tokio::process::Command::new(server_binary())
        .env_clear()
        .env("HEARTBEAT_INTERVAL", "-5")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("HEARTBEAT_INTERVAL")
    );
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed_after_http_idle_timeout() {
    use tokio::io::AsyncReadExt;
    const IDLE_MS: u64 = 500;
    // hyper's own header timeout is 30 s and the server's default 100 s: closing within the
    // margin can only come from the configured 500 ms. The lower bound rules out a close
    // that has nothing to do with the timeout.
    const MARGIN_MS: u64 = 2500;
    let server = Server::start(&[("HTTP_IDLE_TIMEOUT", &IDLE_MS.to_string())]).await;
    let mut idle = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let connected = std::time::Instant::now();
    let mut buffer = Vec::new();
    // Waiting longer than the bound lets a late close be measured and named.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(40),
        idle.read_to_end(&mut buffer),
    )
    .await;
    let closed_after = connected.elapsed().as_millis() as u64;
    assert!(
        read.is_ok_and(|r| r.is_ok()),
        "the idle connection is still open after 40 s"
    );
    assert!(
        (IDLE_MS - 50..=IDLE_MS + MARGIN_MS).contains(&closed_after),
        "closed {closed_after} ms after connecting, expected {IDLE_MS} ms (HTTP_IDLE_TIMEOUT) \
         + at most {MARGIN_MS} ms"
    );
}
