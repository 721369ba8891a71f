//! The HTTP/1.1 servers of both listeners: the accept loop, one hyper connection per TCP
//! connection with a header-read timeout (axum's `serve` sets none, so an idle or slowloris
//! client could hold a socket and a file descriptor forever without sending a request),
//! WebSocket upgrades, and a graceful stop of plain HTTP connections at exit.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

/// Serves `router` on every connection `listener` accepts until `stop` is cancelled; then
/// stops accepting, lets requests in flight finish and closes idle connections. Upgraded
/// WebSockets are not HTTP connections any more: they are untouched.
/// `idle_timeout` bounds how long a connection may take to send a request's headers, and how
/// long a keep-alive connection may sit idle between requests.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    idle_timeout: Duration,
    stop: CancellationToken,
) where
    L: axum::serve::Listener<Io = TcpStream, Addr = SocketAddr>,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                debug!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
}
