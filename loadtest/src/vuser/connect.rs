//! One connection attempt: TCP connect from the user's source address, the TLS handshake for
//! a `wss://` target, the WebSocket upgrade on `/ws/chat/{id}`, and the server's
//! `connection_established`, all within the timeout; and how an attempt failed, in the
//! classes the report counts.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::ProtocolError};
use tokio_util::either::Either;

use super::settings::UserContext;
use super::wire::{self, Incoming};
use crate::stats::ConnectFailure;
use crate::tls::{self, TlsStream};

/// The transport under the WebSocket: plain TCP, or TLS over it.
type Stream = Either<TcpStream, TlsStream>;

/// An established connection.
pub(super) type Ws = WebSocketStream<Stream>;

/// Small buffers: a load generator holds tens of thousands of mostly idle connections.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
}

/// TCP connect, TLS handshake (`wss://`), upgrade, and `connection_established`, within the
/// timeout; returns the connection and how long all of it took.
pub(super) async fn connect(
    ctx: &UserContext,
    id: &str,
    source: Option<IpAddr>,
) -> Result<(Ws, Duration), ConnectFailure> {
    let started = Instant::now();
    let steps = async {
        let tcp = open_socket(ctx.target.addr, source)
            .await
            .map_err(|e| classify_io(&e))?;
        let stream = match &ctx.tls {
            None => Either::Left(tcp),
            Some(client) => {
                Either::Right(client.handshake(tcp).await.map_err(|e| classify_io(&e))?)
            }
        };
        let url = ctx.target.chat_url(id);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
                .await
                .map_err(|e| classify_ws(&e))?;
        await_established(&mut ws).await?;
        Ok(ws)
    };
    match timeout(ctx.timeout, steps).await {
        Ok(Ok(ws)) => Ok((ws, started.elapsed())),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(ConnectFailure::Timeout),
    }
}

async fn open_socket(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The server's first message must be `connection_established` (control frames aside).
async fn await_established(ws: &mut Ws) -> Result<(), ConnectFailure> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return match wire::parse(&text) {
                    Some(Incoming::Established) => Ok(()),
                    _ => Err(ConnectFailure::Protocol),
                };
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => return Err(ConnectFailure::Protocol),
            Some(Err(e)) => return Err(classify_ws(&e)),
            None => return Err(ConnectFailure::Reset),
        }
    }
}

fn classify_io(e: &io::Error) -> ConnectFailure {
    use io::ErrorKind::*;
    if tls::is_tls_error(e) {
        return ConnectFailure::Tls;
    }
    match e.kind() {
        ConnectionRefused => ConnectFailure::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => ConnectFailure::Reset,
        TimedOut => ConnectFailure::Timeout,
        AddrNotAvailable | AddrInUse => ConnectFailure::AddressUnavailable,
        _ => ConnectFailure::Other,
    }
}

fn classify_ws(e: &WsError) -> ConnectFailure {
    match e {
        WsError::Io(io) => classify_io(io),
        WsError::Http(response) => ConnectFailure::HttpStatus(response.status().as_u16()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ConnectFailure::Reset,
        WsError::Protocol(
            ProtocolError::HandshakeIncomplete | ProtocolError::ResetWithoutClosingHandshake,
        ) => ConnectFailure::Reset,
        _ => ConnectFailure::Protocol,
    }
}
