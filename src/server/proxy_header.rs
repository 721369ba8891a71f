//! PROXY protocol on the public listener (`PROXY_PROTOCOL=v1|v2|any`): behind an L4 load
//! balancer (the fleet's NLB, nginx's stream module, HAProxy) the TCP peer is the balancer,
//! and the client's address comes in a header before the first HTTP byte: binary (v2) or a
//! text line (v1). A peer in `PROXY_PROTOCOL_TRUSTED` must send one of the version
//! configured; its source address is then the client's for everything after (per-IP limits,
//! the upgrade rate, logs), and a `LOCAL` (v2) or `UNKNOWN` (v1) header (the balancer's own
//! health check) keeps the TCP peer. A header from any other peer, a trusted peer without
//! one (or with one of another version), and a malformed, cut short or oversized header
//! close the connection, each counted in `websocket_http_refused_total`. Parsing is the
//! `ppp` crate's; this module reads exactly the header's bytes off the socket, so that what
//! follows is still in the kernel for hyper (and, after the upgrade, for the WebSocket).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use ppp::v1::Addresses as V1Addresses;
use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX, ParseError};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::{Config, ProxyProtocol};
use crate::http::is_trusted;
use crate::metrics::HttpRefusal;
use crate::state::AppState;

/// The fixed part of a v2 header: the signature, version and command, family and protocol,
/// and the length of what follows.
const FIXED_BYTES: usize = 16;
/// The first bytes of a v1 (text) header, refused from untrusted peers like a v2 one.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, its `\r\n` included (the spec's 107 bytes).
const V1_MAX_BYTES: usize = 107;
/// Bytes of the v2 signature that identify it: `\r\n\r\n\0` never starts an HTTP request.
const V2_TELLTALE: usize = 5;

/// Reads the PROXY headers of the public listener's connections.
pub struct ProxyHeaders {
    state: Arc<AppState>,
    /// The versions a trusted peer may send.
    versions: ProxyProtocol,
    trusted: Vec<IpNet>,
    /// Longest header accepted, fixed part included (`MAX_HEADER_BYTES`).
    max_bytes: usize,
    /// How long the header (or, from other peers, the first byte) may take.
    timeout: Duration,
}

impl ProxyHeaders {
    /// `None` unless `PROXY_PROTOCOL` is on.
    pub fn new(state: &Arc<AppState>) -> Option<Arc<ProxyHeaders>> {
        let config: &Config = &state.config;
        let versions = config.edge.proxy_protocol;
        (versions != ProxyProtocol::Off).then(|| {
            Arc::new(ProxyHeaders {
                state: Arc::clone(state),
                versions,
                trusted: config.edge.proxy_protocol_trusted.clone(),
                max_bytes: config.http.max_header_bytes,
                timeout: config.http_idle_timeout,
            })
        })
    }

    /// Whether `peer` sends (and must send) a header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        is_trusted(peer, &self.trusted)
    }

    /// The client of a connection from `peer`: the header's source when `peer` is trusted,
    /// else `peer` itself. `None`: the connection must be closed (a refusal is counted).
    /// From another peer nothing at all within the timeout is a request head that did not
    /// come (`header_timeout`, as hyper would have counted it).
    pub async fn client(&self, stream: &mut TcpStream, peer: SocketAddr) -> Option<SocketAddr> {
        let trusted = self.trusts(peer.ip());
        let read = async {
            if trusted {
                self.read_header(stream)
                    .await
                    .map(|source| source.unwrap_or(peer))
            } else if sends_a_header(stream).await {
                Err(Some(HttpRefusal::ProxyHeaderUntrusted))
            } else {
                Ok(peer)
            }
        };
        let too_slow = if trusted {
            HttpRefusal::ProxyHeaderTimeout
        } else {
            HttpRefusal::HeaderTimeout
        };
        let outcome = tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or(Err(Some(too_slow)));
        match outcome {
            Ok(client) => Some(client),
            Err(refusal) => {
                if let Some(refusal) = refusal {
                    self.state.metrics.http.refused(refusal);
                    debug!(%peer, reason = refusal.as_str(), "connection refused before any request");
                }
                None
            }
        }
    }

    /// Reads a trusted peer's header, of a version it may send (told apart by the first
    /// byte: `P` for v1, `\r` for v2): its source address, `None` for one that keeps the TCP
    /// peer. `Err(None)`: closed before a byte, which is no refusal (a TCP health check).
    async fn read_header(
        &self,
        stream: &mut TcpStream,
    ) -> Result<Option<SocketAddr>, Option<HttpRefusal>> {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => Err(None),
            Ok(_) if first[0] == V1_PREFIX[0] && self.versions.accepts_v1() => {
                read_v1_header(stream).await
            }
            Ok(_) if self.versions.accepts_v2() => read_v2_header(stream, self.max_bytes).await,
            Ok(_) => Err(Some(HttpRefusal::ProxyHeaderMissing)),
        }
    }
}

/// Whether an untrusted peer's first bytes (peeked, not taken) are a PROXY header.
async fn sends_a_header(stream: &TcpStream) -> bool {
    let mut first = [0u8; FIXED_BYTES];
    match stream.peek(&mut first).await {
        Ok(n) => is_a_header(&first[..n]),
        // hyper meets the same error and ends the connection.
        Err(_) => false,
    }
}

/// Whether `first`, the first bytes of a connection, start a v1 or v2 header.
fn is_a_header(first: &[u8]) -> bool {
    let v2 = first.len() >= V2_TELLTALE
        && PROTOCOL_PREFIX.starts_with(&first[..first.len().min(PROTOCOL_PREFIX.len())]);
    v2 || first.starts_with(V1_PREFIX)
}

/// Reads one v1 header, exactly its bytes (through its `\n`: every byte before it is the
/// header's, so what is peeked without one is taken whole): its source address, `None` for
/// `UNKNOWN` (the TCP peer is kept).
async fn read_v1_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, Option<HttpRefusal>> {
    let invalid = Some(HttpRefusal::ProxyHeaderInvalid);
    let mut header = Vec::with_capacity(V1_MAX_BYTES);
    let mut chunk = [0u8; V1_MAX_BYTES];
    loop {
        let room = V1_MAX_BYTES - header.len();
        let peeked = match stream.peek(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return Err(invalid),
            Ok(peeked) => peeked,
        };
        let end = chunk[..peeked].iter().position(|&b| b == b'\n');
        let take = end.map_or(peeked, |at| at + 1);
        let start = header.len();
        header.resize(start + take, 0);
        if read_full(stream, &mut header[start..]).await.ok() != Some(take) {
            return Err(invalid);
        }
        if end.is_some() {
            return v1_source_address(&header).ok_or(invalid);
        }
        if header.len() == V1_MAX_BYTES {
            return Err(invalid);
        }
    }
}

/// The source address of a complete v1 header (ending in `\r\n`, nothing after): `Some(None)`
/// for `UNKNOWN`, `None` when it is not one.
fn v1_source_address(header: &[u8]) -> Option<Option<SocketAddr>> {
    let text = std::str::from_utf8(header).ok()?;
    let parsed = ppp::v1::Header::try_from(text).ok()?;
    if parsed.header.len() != text.len() {
        return None; // a `\r` before the end
    }
    Some(match parsed.addresses {
        V1Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        V1Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        V1Addresses::Unknown => None,
    })
}

/// Reads one v2 header, exactly its bytes: its source address, `None` for a `LOCAL` header or
/// one without addresses (the TCP peer is kept). `Err(None)`: closed before a byte, which is
/// no refusal (a TCP health check).
async fn read_v2_header(
    stream: &mut TcpStream,
    max_bytes: usize,
) -> Result<Option<SocketAddr>, Option<HttpRefusal>> {
    let mut header = vec![0u8; FIXED_BYTES];
    let read = match read_full(stream, &mut header).await {
        Ok(0) | Err(_) => return Err(None),
        Ok(read) => read,
    };
    if !PROTOCOL_PREFIX.starts_with(&header[..read.min(PROTOCOL_PREFIX.len())]) {
        return Err(Some(HttpRefusal::ProxyHeaderMissing));
    }
    if read < FIXED_BYTES {
        return Err(Some(HttpRefusal::ProxyHeaderInvalid));
    }
    let length = FIXED_BYTES + usize::from(u16::from_be_bytes([header[14], header[15]]));
    if length > max_bytes {
        return Err(Some(HttpRefusal::ProxyHeaderInvalid));
    }
    header.resize(length, 0);
    match read_full(stream, &mut header[FIXED_BYTES..]).await {
        Ok(n) if n == length - FIXED_BYTES => {}
        _ => return Err(Some(HttpRefusal::ProxyHeaderInvalid)),
    }
    source_address(&header).map_err(|_| Some(HttpRefusal::ProxyHeaderInvalid))
}

/// Fills `buffer` unless the stream ends first: the bytes read.
async fn read_full(stream: &mut TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The source address of a complete v2 header; `None` for `LOCAL`, or for `PROXY` over an
/// unspecified or Unix family (the spec says to use the connection's own addresses then).
fn source_address(header: &[u8]) -> Result<Option<SocketAddr>, ParseError> {
    let header = Header::try_from(header)?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        Addresses::IPv6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, IPv4, IPv6, Protocol, Version};

    fn proxy(source: &str, destination: &str) -> Vec<u8> {
        let addresses: Addresses = (
            source.parse::<SocketAddr>().unwrap(),
            destination.parse::<SocketAddr>().unwrap(),
        )
            .into();
        Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[test]
    fn the_source_is_the_client() {
        let v4 = proxy("203.0.113.9:40000", "10.0.0.5:3001");
        assert_eq!(
            source_address(&v4),
            Ok(Some("203.0.113.9:40000".parse().unwrap()))
        );
        let v6 = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            IPv6::new(
                [0x2001, 0xdb8, 0, 0, 0, 0, 0, 7],
                [0xfd00, 0, 0, 0, 0, 0, 0, 1],
                5,
                3001,
            ),
        )
        .write_tlv(0xEAu8, b"vpce-0123456789abcdef".as_slice())
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            source_address(&v6),
            Ok(Some("[2001:db8::7]:5".parse().unwrap())),
            "with a TLV after the addresses (the NLB's endpoint id)"
        );
    }

    #[test]
    fn local_and_unspecified_keep_the_peer() {
        let local = Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Stream,
            IPv4::new([10, 0, 0, 1], [10, 0, 0, 2], 1, 2),
        )
        .build()
        .unwrap();
        assert_eq!(source_address(&local), Ok(None));
        let unspecified = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Unspecified,
            Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(source_address(&unspecified), Ok(None));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let good = proxy("203.0.113.9:40000", "10.0.0.5:3001");
        let mut bad_version = good.clone();
        bad_version[12] = 0x11;
        assert!(source_address(&bad_version).is_err());
        let mut bad_family = good.clone();
        bad_family[13] = 0x51;
        assert!(source_address(&bad_family).is_err());
        // A length too short for the IPv4 addresses it announces.
        let mut short = good[..FIXED_BYTES].to_vec();
        short[15] = 4;
        short.extend_from_slice(&[1, 2, 3, 4]);
        assert!(source_address(&short).is_err());
        assert!(source_address(&good[..20]).is_err(), "cut short");
    }

    #[test]
    fn v1_headers_give_their_source() {
        let v4 = b"PROXY TCP4 203.0.113.9 10.0.0.5 40000 3001\r\n";
        assert_eq!(
            v1_source_address(v4),
            Some(Some("203.0.113.9:40000".parse().unwrap()))
        );
        let v6 = b"PROXY TCP6 2001:db8::7 fd00::1 5 3001\r\n";
        assert_eq!(
            v1_source_address(v6),
            Some(Some("[2001:db8::7]:5".parse().unwrap()))
        );
        assert_eq!(v1_source_address(b"PROXY UNKNOWN\r\n"), Some(None));
        for bad in [
            b"PROXY TCP4 203.0.113.9 10.0.0.5 40000\r\n".as_slice(),
            b"PROXY TCP4 203.0.113.9 10.0.0.5 40000 3001\n",
            b"PROXY TCP4 203.0.113.9\r 10.0.0.5 40000 3001\r\n",
            b"PROXY TCP5 203.0.113.9 10.0.0.5 40000 3001\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(
                v1_source_address(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn headers_are_told_from_http() {
        let v2 = proxy("203.0.113.9:40000", "10.0.0.5:3001");
        assert!(is_a_header(&v2));
        assert!(
            is_a_header(&v2[..V2_TELLTALE]),
            "the telltale part is enough"
        );
        assert!(is_a_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(!is_a_header(b"GET /ws/chat/a HTTP/1.1\r\n"));
        assert!(!is_a_header(b"PUT / HTTP/1.1\r\n"));
        assert!(!is_a_header(b"\r\n\r\n"), "blank lines are not a header");
        assert!(!is_a_header(b""));
    }
}
