//! The public HTTP surface: the WebSocket upgrade routes (`/ws/chat/{id}`, `/ws/echo`), each
//! admitted then handed to its session, `/health`, `/ready`, the test page, JSON errors for
//! everything else, and the security headers on every response.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use super::admission::{admit, check_origin, limit_upgrade_rate};
use super::auth::{Refusal as AuthRefusal, upgrade_identity};
use super::response::json_error;
use super::upgrade::{NotAnUpgrade, UpgradeRequest};
use crate::lifecycle::{Phase, unix_ms};
use crate::metrics::{HttpRefusal, RejectReason};
use crate::protocol::is_valid_connection_id;
use crate::registry::Admission;
use crate::session::{chat, echo};
use crate::state::AppState;
use crate::ws::WebSocket;

/// Content-Security-Policy of every response: the test page loads only its own script and
/// stylesheet and connects only back to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const APP_CSS: &str = include_str!("../static/app.css");
/// The page's icon: without one, browsers ask for /favicon.ico and log its 404 as an error.
const FAVICON_SVG: &str = include_str!("../static/favicon.svg");

/// The router of the public listener.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let router = Router::new()
        .route(
            "/",
            get(|| async { static_asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { static_asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { static_asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { static_asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route("/health", get(health))
        .route("/ready", get(ready));
    let mut websockets = Router::new()
        .route("/ws/chat/{*id}", get(chat_upgrade))
        .route("/ws/chat", any(invalid_connection_id))
        .route("/ws/chat/", any(invalid_connection_id));
    if state.config.enable_echo {
        websockets = websockets.route("/ws/echo", get(echo_upgrade));
    }
    if state.upgrade_rate.is_some() {
        websockets =
            websockets.route_layer(from_fn_with_state(Arc::clone(&state), limit_upgrade_rate));
    }
    let router = router
        .merge(websockets)
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "not_found") })
        .method_not_allowed_fallback(|| async {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        });
    security_headers(router, state.config.hsts_max_age).with_state(state)
}

fn security_headers(router: Router<Arc<AppState>>, hsts_max_age: u64) -> Router<Arc<AppState>> {
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    let mut router = router;
    for (name, value) in fixed {
        router = router.layer(SetResponseHeaderLayer::overriding(name, value));
    }
    if hsts_max_age > 0 {
        let value = HeaderValue::from_str(&format!("max-age={hsts_max_age}; includeSubDomains"))
            .expect("a number makes a valid header value");
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            value,
        ));
    }
    router
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let status = if state.lifecycle.is_draining() {
        "draining"
    } else {
        "ok"
    };
    let body = json!({
        "status": status,
        "connections": state.registry.len(),
        "uptimeSeconds": state.lifecycle.started.elapsed().as_secs(),
        "startedAtMs": unix_ms(state.lifecycle.started_at),
        "serverId": state.config.server_id,
        "version": env!("CARGO_PKG_VERSION"),
    });
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let phase = state.lifecycle.phase();
    #[cfg(feature = "fault-injection")]
    let phase = if state.faults.ready_503 {
        Phase::Starting
    } else {
        phase
    };
    let status = if phase == Phase::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "status": phase.as_str() })),
    )
        .into_response()
}

async fn invalid_connection_id(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.rejected(RejectReason::InvalidConnectionId);
    json_error(StatusCode::BAD_REQUEST, "invalid_connection_id")
}

async fn chat_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    upgrade: Result<UpgradeRequest, NotAnUpgrade>,
) -> Response {
    let id = match id {
        Ok(Path(id)) if is_valid_connection_id(&id) => id,
        _ => return invalid_connection_id(State(state)).await,
    };
    let claimed = id.clone();
    admit_and_upgrade(
        state,
        &headers,
        peer,
        upgrade,
        Some(&claimed),
        |state| upgrade_identity(state, &headers, &claimed, peer),
        move |ws, state, admission, ip, identity| chat::run(ws, state, admission, id, ip, identity),
    )
}

async fn echo_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<UpgradeRequest, NotAnUpgrade>,
) -> Response {
    admit_and_upgrade(
        state,
        &headers,
        peer,
        upgrade,
        None,
        |_| Ok(()),
        |ws, state, admission, ip, ()| echo::run(ws, state, admission, ip),
    )
}

/// Checks the handshake (a bad one is counted as refused before the upgrade) and the
/// Origin, then `authenticate`s the request (its proof: the chat's identity, if any), admits
/// it (draining, connection id `id`, capacity, per-IP) and hands the upgraded socket, with
/// its reserved slot and the proof, to `serve`; answers the refusal otherwise. The Origin
/// comes before the token so that a page of another site is refused for what it is, without
/// a token verification spent on it.
fn admit_and_upgrade<Proof, Serve, Served>(
    state: Arc<AppState>,
    headers: &HeaderMap,
    peer: SocketAddr,
    upgrade: Result<UpgradeRequest, NotAnUpgrade>,
    id: Option<&str>,
    authenticate: impl FnOnce(&AppState) -> Result<Proof, AuthRefusal>,
    serve: Serve,
) -> Response
where
    Proof: Send + 'static,
    Serve: FnOnce(WebSocket, Arc<AppState>, Admission, IpAddr, Proof) -> Served + Send + 'static,
    Served: Future<Output = ()> + Send + 'static,
{
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(not_an_upgrade) => {
            state.metrics.http.refused(HttpRefusal::BadHandshake);
            return not_an_upgrade.into_response();
        }
    };
    if let Err(refusal) = check_origin(&state, headers, peer) {
        return refusal.into_response();
    }
    let proof = match authenticate(&state) {
        Ok(proof) => proof,
        Err(refusal) => return refusal.into_response(),
    };
    let (admission, ip) = match admit(&state, headers, peer, id) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    upgrade.accept(move |upgraded| {
        let ws = WebSocket::new(
            upgraded.stream,
            upgraded.already_read,
            state.config.max_message_bytes,
        );
        serve(ws, state, admission, ip, proof)
    })
}
