//! Whom wsctl trusts on TLS connections: a `wss://` public URL (the probes through Traefik)
//! and an `https://` Traefik API. The system's roots, through rustls-native-certs (the host's
//! trust store, or `SSL_CERT_FILE` / `SSL_CERT_DIR` instead when set), plus the CA
//! certificates of `--ca-file` (`WSCTL_CA_FILE`, `caFile`); the same choice as loadtest's
//! (docs/loadtest.md says why). Instances are reached on loopback in plain HTTP: no TLS there.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The roots to verify servers with; the system's are loaded on first use only.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// `--ca-file`, for messages.
    ca_file: Option<PathBuf>,
    /// Its certificates, read when the configuration is loaded.
    extra: Vec<CertificateDer<'static>>,
    /// Every root, once loaded (the error as text, since anyhow's is not Clone).
    roots: Arc<OnceLock<Result<Arc<Vec<CertificateDer<'static>>>, String>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Trust {
    /// The system's roots, plus the certificates of `ca_file` when given (read now, so that a
    /// bad file is refused before anything is done).
    pub fn new(ca_file: Option<&Path>) -> Result<Self> {
        let extra = match ca_file {
            None => Vec::new(),
            Some(path) => read_certificates(path)?,
        };
        Ok(Trust {
            ca_file: ca_file.map(Path::to_owned),
            extra,
            roots: Arc::default(),
        })
    }

    fn roots(&self) -> Result<Arc<Vec<CertificateDer<'static>>>> {
        self.roots
            .get_or_init(|| {
                let native = rustls_native_certs::load_native_certs();
                let mut roots = native.certs;
                roots.extend(self.extra.iter().cloned());
                if roots.is_empty() {
                    let errors: Vec<String> =
                        native.errors.iter().map(ToString::to_string).collect();
                    return Err(format!(
                        "no root certificate to verify TLS servers with: the system's store has none ({}) \
                         and no --ca-file (WSCTL_CA_FILE) was given",
                        errors.join("; ")
                    ));
                }
                Ok(Arc::new(roots))
            })
            .clone()
            .map_err(|e| anyhow!(e))
    }

    /// For `wss://` probes (tungstenite over rustls).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(self.roots()?.iter().cloned());
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS setup")?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// For `https://` requests (ureq over rustls).
    pub fn http_config(&self) -> Result<ureq::tls::TlsConfig> {
        let roots = self.roots()?;
        let certs = roots
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der).to_owned());
        Ok(ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider())
            .root_certs(ureq::tls::RootCerts::from(certs))
            .build())
    }

    /// What was trusted, for an error that may be an untrusted certificate.
    pub fn hint(&self) -> String {
        // rustls-native-certs reads these instead of the system's store when either is set.
        let from_env: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .into_iter()
            .filter_map(|var| {
                std::env::var(var)
                    .ok()
                    .map(|value| format!("{var}={value}"))
            })
            .collect();
        let system = if from_env.is_empty() {
            "the system's roots".to_owned()
        } else {
            from_env.join(" and ")
        };
        match &self.ca_file {
            Some(path) => format!("trusted: {system} and {}", path.display()),
            None => format!("trusted: {system}; a private CA needs --ca-file or WSCTL_CA_FILE"),
        }
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read CA file {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("CA file {}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("CA file {}: no PEM CERTIFICATE block in it", path.display());
    }
    Ok(certs)
}

/// The name a server's certificate must carry for `host` (brackets of an IPv6 literal off).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|_| anyhow!("{host:?} is neither a DNS name nor an IP address"))
}

/// Whether an I/O error is TLS refusing the peer (certificate, alert), not the transport.
pub fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("ca.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let err = format!("{:#}", Trust::new(Some(&text)).unwrap_err());
        assert!(
            err.contains("no PEM CERTIFICATE") && err.contains("ca.pem"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Trust::new(Some(&dir.path().join("gone.pem"))).unwrap_err()
        );
        assert!(err.contains("gone.pem"), "{err}");
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        assert!(server_name("ws.example.com").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("no spaces").is_err());
    }
}
