//! The HTTP/1.1 servers of both listeners: the accept loop, the PROXY header of a connection
//! from a load balancer (`PROXY_PROTOCOL`, [`super::proxy_header`]), one hyper connection per
//! TCP connection with a bound on the request head (`MAX_HEADER_BYTES`, else `431`) and a
//! header-read timeout (axum's `serve` sets neither, so a slowloris client could hold a socket
//! and hyper's 400 KiB buffer for ever), the pending-connection caps of the public listener,
//! WebSocket upgrades, and a graceful stop of plain HTTP connections at exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use super::pending::{PendingGate, PendingSlot};
use super::proxy_header::ProxyHeaders;

/// hyper's smallest read buffer: a head bound below it is enforced by `max_header_size` alone.
const HYPER_MIN_BUFFER: usize = 8192;

/// How one listener's HTTP connections are bounded.
#[derive(Clone)]
pub struct HttpBounds {
    /// Request line and headers of one request, in bytes.
    pub max_header_bytes: usize,
    /// How long a connection may take to send a request's head, and sit idle between requests.
    pub idle_timeout: Duration,
    /// The pending caps (public listener only).
    pub gate: Option<Arc<PendingGate>>,
    /// The PROXY headers read before HTTP (public listener, `PROXY_PROTOCOL` on).
    pub proxy: Option<Arc<ProxyHeaders>>,
}

impl HttpBounds {
    fn builder(&self) -> http1::Builder {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.idle_timeout)
            .max_header_size(self.max_header_bytes)
            .max_buf_size(self.max_header_bytes.max(HYPER_MIN_BUFFER));
        http
    }
}

/// Serves `router` on every connection `listener` accepts until `stop` is cancelled; then
/// stops accepting, lets requests in flight finish and closes idle connections. Upgraded
/// WebSockets are not HTTP connections any more: they are untouched.
pub async fn serve<L>(mut listener: L, router: Router, bounds: HttpBounds, stop: CancellationToken)
where
    L: axum::serve::Listener<Io = TcpStream, Addr = SocketAddr>,
{
    let http = Arc::new(bounds.builder());
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let mut slot = match bounds.gate.as_ref().map(|gate| gate.enter(peer.ip())) {
            Some(Err(refusal)) => {
                debug!(%peer, reason = refusal.as_str(), "connection refused before any request");
                continue;
            }
            Some(Ok(slot)) => Some(slot),
            None => None,
        };
        let connection = Connection {
            http: Arc::clone(&http),
            router: router.clone(),
            stop: stop.clone(),
        };
        let proxy = bounds.proxy.clone();
        tokio::spawn(async move {
            let client = match proxy {
                Some(proxy) => proxied_client(&proxy, &mut stream, peer, slot.as_mut()).await,
                None => Some(peer),
            };
            if let Some(client) = client {
                connection.serve(stream, client, slot).await;
            }
        });
    }
}

/// The client of a connection whose PROXY header is read first, its pending slot counted
/// under that client from now on; `None`: the connection is closed (refusals are counted).
async fn proxied_client(
    proxy: &ProxyHeaders,
    stream: &mut TcpStream,
    peer: SocketAddr,
    slot: Option<&mut PendingSlot>,
) -> Option<SocketAddr> {
    let client = proxy.client(stream, peer).await?;
    if let Some(slot) = slot
        && let Err(refusal) = slot.attribute(client.ip())
    {
        debug!(%peer, %client, reason = refusal.as_str(), "connection refused before any request");
        return None;
    }
    Some(client)
}

/// What serving one accepted connection needs.
struct Connection {
    http: Arc<http1::Builder>,
    router: Router,
    stop: CancellationToken,
}

impl Connection {
    /// Runs hyper on `stream` for `client` (the TCP peer, or the PROXY header's source) until
    /// the connection closes or is upgraded; `slot` is held until then.
    async fn serve(self, stream: TcpStream, client: SocketAddr, slot: Option<PendingSlot>) {
        let Connection { http, router, stop } = self;
        let first_answer = slot.as_ref().map(PendingSlot::first_answer);
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(client));
            let first_answer = first_answer.clone();
            router.clone().oneshot(request).inspect(move |_| {
                // An upgrade's answer is ready once its connection holds a registry slot.
                if let Some(first_answer) = first_answer {
                    first_answer.given();
                }
            })
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = &result {
            debug!(peer = %client, %error, "HTTP connection ended with an error");
        }
        // Upgraded or closed: the connection waits no more.
        if let (Some(slot), Err(error)) = (slot, &result) {
            slot.ended_with(error);
        }
    }
}
