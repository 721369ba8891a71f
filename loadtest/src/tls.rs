//! TLS for `wss://` targets: rustls (ring) verifying the server's certificate against the
//! system's root certificates plus the CA certificates of `--ca-file`.
//!
//! The system's roots come from rustls-native-certs, that is the host's trust store
//! (`/etc/ssl/certs` on Debian, `security.pki` on NixOS), or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` instead when set: the store operators already keep current and add their
//! private CAs to, rather than a list compiled into the binary (webpki-roots) that ages until
//! the next build and knows no private CA.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What a user needs to open TLS to the target; part of the plan a worker receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// The name the server's certificate must carry: the URL's host (DNS name or IP).
    pub server_name: String,
    /// The PEM text of `--ca-file`: CA certificates trusted besides the system's.
    pub extra_roots: Option<String>,
}

impl Tls {
    /// TLS to `host`, which must be a DNS name or an IP address.
    pub fn new(host: &str, extra_roots: Option<String>) -> Result<Self, String> {
        ServerName::try_from(host)
            .map_err(|_| format!("{host:?} is neither a DNS name nor an IP address"))?;
        Ok(Tls {
            server_name: host.to_owned(),
            extra_roots,
        })
    }

    /// The client side, ready to connect: every root loaded and parsed.
    pub fn client(&self) -> Result<TlsClient, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &self.extra_roots {
            for cert in parse_certificates(pem.as_bytes())? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file: a certificate cannot be a root: {e}"))?;
            }
        }
        if roots.is_empty() {
            let errors: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "no root certificate to verify the server with: the system's store has none ({}) \
                 and no --ca-file was given",
                if errors.is_empty() {
                    "install ca-certificates, or set SSL_CERT_FILE".to_owned()
                } else {
                    errors.join("; ")
                }
            ));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(self.server_name.clone())
            .map_err(|_| format!("{:?} is not a valid server name", self.server_name))?;
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// Reads `--ca-file`: PEM, one certificate or more.
pub fn read_ca_file(path: &Path) -> Result<String, String> {
    let pem =
        std::fs::read_to_string(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    parse_certificates(pem.as_bytes()).map_err(|e| format!("{e} ({})", path.display()))?;
    Ok(pem)
}

fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--ca-file: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("--ca-file: no PEM CERTIFICATE block in it".into());
    }
    Ok(certs)
}

/// A TLS connection to the target.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS client of one process's users.
pub struct TlsClient {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl TlsClient {
    /// The TLS handshake over an open TCP connection.
    pub async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

/// Whether an I/O error is TLS refusing the peer (certificate, alert, protocol), rather than
/// the transport failing.
pub fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_must_be_names_or_addresses() {
        assert!(Tls::new("ws.example.com", None).is_ok());
        assert!(Tls::new("127.0.0.1", None).is_ok());
        assert!(Tls::new("::1", None).is_ok());
        assert!(Tls::new("bad host", None).unwrap_err().contains("neither"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("loadtest-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        assert!(
            read_ca_file(&empty)
                .unwrap_err()
                .contains("no PEM CERTIFICATE")
        );
        let missing = read_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
