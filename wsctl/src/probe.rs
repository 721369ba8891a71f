//! New WebSocket connections through Traefik, as a client makes them: which server answers
//! (`serverId` of `connection_established`, wire protocol v1). This is how a switch is
//! verified from the outside rather than trusted. The public URL may be `wss://`: the probe
//! then verifies Traefik's certificate as a client would (tls.rs).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tungstenite::http::Uri;
use tungstenite::{HandshakeError, Message};

use crate::tls::{self, Trust};

const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const PROBE_PAUSE: Duration = Duration::from_millis(100);

/// Traefik's entry point as clients reach it: `ws://HOST:PORT`, or `wss://HOST[:PORT]`
/// (port 443 by default), without a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    tls: bool,
    host: String,
    port: u16,
}

impl PublicUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let shape = "must be ws://HOST:PORT or wss://HOST[:PORT] (Traefik's entry point)";
        let uri: Uri = url
            .parse()
            .with_context(|| format!("public URL {shape}, got '{url}'"))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => bail!("public URL {shape}, got '{url}'"),
        };
        ensure!(
            uri.path() == "/" && uri.query().is_none() && !url.ends_with('/'),
            "public URL {shape} without a path, got '{url}'"
        );
        let host = uri.host().filter(|h| !h.is_empty());
        let port = uri.port_u16().or(tls.then_some(443));
        match (host, port) {
            (Some(host), Some(port)) => Ok(PublicUrl {
                tls,
                host: host.to_owned(),
                port,
            }),
            _ => bail!("public URL {shape}, got '{url}'"),
        }
    }

    pub fn tls(&self) -> bool {
        self.tls
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Open one connection to `public_url`, read `connection_established`, close, and return
/// its `serverId`.
pub fn server_id(public_url: &str, trust: &Trust) -> Result<String> {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let connection_id = format!(
        "wsctl-probe-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let url = format!("{public_url}/ws/chat/{connection_id}");
    connect_and_identify(&PublicUrl::parse(public_url)?, &url, trust)
        .with_context(|| format!("new connection to {url}"))
}

fn connect_and_identify(public: &PublicUrl, url: &str, trust: &Trust) -> Result<String> {
    let addr = (
        public.host.trim_start_matches('[').trim_end_matches(']'),
        public.port,
    )
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", public.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", public.host))?;
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).context("TCP connect")?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    if !public.tls {
        return identify(url, stream, trust);
    }
    let tls =
        rustls::ClientConnection::new(trust.client_config()?, tls::server_name(&public.host)?)
            .context("TLS setup")?;
    identify(url, rustls::StreamOwned::new(tls, stream), trust)
}

/// The upgrade on `stream`, then the server's greeting.
fn identify(url: &str, stream: impl Read + Write, trust: &Trust) -> Result<String> {
    let (mut socket, _) = tungstenite::client(url, stream).map_err(|e| match e {
        HandshakeError::Failure(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            anyhow::anyhow!(
                "upgrade refused: HTTP {} {}",
                response.status(),
                body.trim()
            )
        }
        HandshakeError::Failure(tungstenite::Error::Io(io)) if tls::is_tls_error(&io) => {
            anyhow::anyhow!("TLS: {io} ({})", trust.hint())
        }
        other => anyhow::anyhow!("upgrade failed: {other}"),
    })?;
    let server = loop {
        match socket.read().context("reading connection_established")? {
            Message::Text(text) => break established_server_id(&text)?,
            Message::Close(frame) => bail!("closed before connection_established: {frame:?}"),
            _ => continue,
        }
    };
    // A clean close, so the server counts a client_close rather than a transport error.
    let _ = socket.close(None);
    while socket.read().is_ok() {}
    Ok(server)
}

fn established_server_id(text: &str) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("first message is not JSON: {text}"))?;
    if value["type"] != "connection_established" {
        bail!("first message is not connection_established: {text}");
    }
    value["serverId"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("connection_established without serverId: {text}"))
}

/// How a run of probes went.
#[derive(Clone, Debug, Default)]
pub struct Landing {
    pub attempts: u32,
    /// Connections answered by another server (each restarts the run in a row).
    pub elsewhere: u32,
    pub failed: u32,
    pub last_error: Option<String>,
}

impl std::fmt::Display for Landing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connections, {} elsewhere, {} failed",
            self.attempts, self.elsewhere, self.failed
        )
    }
}

/// Whether a failed connection ends the run (a switch being verified) or is retried until
/// the deadline (a rollback, when the colour left behind may be dying).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    Fail,
    Retry,
}

/// Probe until `in_a_row` consecutive new connections land on `expected`, within `timeout`.
/// Traefik applies a new routing.yml a moment (about 2 s, its provider throttle) after it
/// changes: connections landing elsewhere meanwhile are that moment, not an error.
pub fn wait_landing(
    public_url: &str,
    trust: &Trust,
    expected: &str,
    in_a_row: u32,
    timeout: Duration,
    on_failure: OnFailure,
) -> Result<Landing> {
    landing_loop(
        || server_id(public_url, trust),
        expected,
        in_a_row,
        timeout,
        on_failure,
    )
}

fn landing_loop(
    mut probe: impl FnMut() -> Result<String>,
    expected: &str,
    in_a_row: u32,
    timeout: Duration,
    on_failure: OnFailure,
) -> Result<Landing> {
    let deadline = Instant::now() + timeout;
    let mut landing = Landing::default();
    let mut run = 0;
    while run < in_a_row {
        if Instant::now() >= deadline {
            bail!(
                "only {run} of {in_a_row} new connections in a row reached {expected} in {} ({landing}{})",
                humantime::format_duration(timeout),
                landing
                    .last_error
                    .as_ref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
        }
        landing.attempts += 1;
        match probe() {
            Ok(server) if server == expected => run += 1,
            // Before Traefik applies the new routing, or while a gradual shift still splits.
            Ok(_) => {
                landing.elsewhere += 1;
                run = 0;
            }
            Err(e) if on_failure == OnFailure::Fail => return Err(e),
            Err(e) => {
                landing.failed += 1;
                landing.last_error = Some(format!("{e:#}"));
                run = 0;
            }
        }
        sleep(PROBE_PAUSE);
    }
    Ok(landing)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn scripted(answers: &[&str]) -> impl FnMut() -> Result<String> {
        let mut answers: Vec<String> = answers.iter().rev().map(|s| s.to_string()).collect();
        move || match answers.pop().expect("more probes than scripted") {
            a if a == "fail" => bail!("connection refused"),
            a => Ok(a),
        }
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn waits_for_the_reload_then_counts_a_run() {
        let l = landing_loop(
            scripted(&["blue", "blue", "green", "green", "green"]),
            "green",
            3,
            LONG,
            OnFailure::Fail,
        )
        .unwrap();
        assert_eq!((l.attempts, l.elsewhere, l.failed), (5, 2, 0));
    }

    #[test]
    fn a_connection_elsewhere_restarts_the_run() {
        let answers = ["green", "blue", "green", "green", "green"];
        let l = landing_loop(scripted(&answers), "green", 3, LONG, OnFailure::Fail).unwrap();
        assert_eq!((l.attempts, l.elsewhere), (5, 1));
    }

    #[test]
    fn a_failed_connection_fails_a_verification_but_not_a_rollback() {
        assert!(landing_loop(scripted(&["fail"]), "green", 1, LONG, OnFailure::Fail).is_err());
        let l = landing_loop(
            scripted(&["green", "fail", "blue", "blue", "blue"]),
            "blue",
            3,
            LONG,
            OnFailure::Retry,
        )
        .unwrap();
        assert_eq!((l.failed, l.elsewhere), (1, 1));
    }

    #[test]
    fn gives_up_at_the_deadline_with_what_it_saw() {
        let err = landing_loop(
            || Ok("blue".to_owned()),
            "green",
            1,
            Duration::from_millis(250),
            OnFailure::Fail,
        )
        .unwrap_err();
        assert!(err.to_string().contains("only 0 of 1"), "{err}");
    }

    /// A CA written to `dir/NAME.pem`, and the rustls server configuration of a certificate
    /// for 127.0.0.1 that it signed.
    fn pki(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, ca.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        (path, Arc::new(config))
    }

    /// A protocol v1 server behind TLS for one connection, greeting as `green`; its URL.
    fn serve_one_tls(config: Arc<rustls::ServerConfig>) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("wss://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), tcp);
            // An untrusted certificate ends here: the client aborts the handshake.
            let Ok(mut ws) = tungstenite::accept(tls) else {
                return;
            };
            let hello = r#"{"type":"connection_established","connectionId":"p","serverId":"green","heartbeatIntervalMs":30000,"ts":1}"#;
            ws.send(Message::text(hello)).unwrap();
            while ws.read().is_ok() {}
        });
        (url, server)
    }

    #[test]
    fn a_wss_public_url_is_probed_through_tls_trusting_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_file, config) = pki(dir.path(), "ca");
        let (url, server) = serve_one_tls(config);
        let trust = Trust::new(Some(&ca_file)).unwrap();
        assert_eq!(server_id(&url, &trust).unwrap(), "green");
        server.join().unwrap();
    }

    #[test]
    fn an_untrusted_certificate_fails_the_probe_saying_what_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (_, config) = pki(dir.path(), "server-ca");
        let (other_ca, _) = pki(dir.path(), "other-ca");
        let (url, server) = serve_one_tls(config);
        let err = format!(
            "{:#}",
            server_id(&url, &Trust::new(Some(&other_ca)).unwrap()).unwrap_err()
        );
        server.join().unwrap();
        assert!(
            err.contains("TLS:") && err.contains("other-ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn public_urls_are_ws_or_wss_without_a_path() {
        let wss = PublicUrl::parse("wss://ws.example.com").unwrap();
        assert_eq!(
            (wss.tls, wss.host.as_str(), wss.port),
            (true, "ws.example.com", 443)
        );
        let ws = PublicUrl::parse("ws://127.0.0.1:80").unwrap();
        assert_eq!((ws.tls, ws.port), (false, 80));
        for bad in [
            "ws://x",
            "http://x:1",
            "ws://x:1/ws",
            "ws://x:1/",
            "wss://",
            "nonsense",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn reads_the_server_id_of_connection_established() {
        let id = established_server_id(
            r#"{"type":"connection_established","connectionId":"a","serverId":"green","heartbeatIntervalMs":30000,"ts":1}"#,
        )
        .unwrap();
        assert_eq!(id, "green");
        assert!(established_server_id(r#"{"type":"heartbeat","ts":1}"#).is_err());
        assert!(established_server_id("not json").is_err());
    }
}
