//! Where the users connect to, and from: the `--url`s (users spread over them round-robin),
//! the CA file for `wss://`, the source addresses and the worker processes.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

use crate::net::{self, Target};

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Server base URL, ws:// or wss://; each user opens URL/ws/chat/{id}. Repeat it to spread
    /// the users over several servers (user N connects to URL number N modulo their count).
    #[arg(long, default_value = "ws://127.0.0.1:3001")]
    pub url: Vec<String>,
    /// PEM CA certificate(s) to trust for a wss:// URL, besides the system's roots
    /// (SSL_CERT_FILE or SSL_CERT_DIR replace those).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Source addresses: ranges and lists, e.g. 127.0.0.2-127.0.0.40 or 10.0.0.5,10.0.0.6
    /// [default: 127.0.0.2-127.0.0.40 for a loopback target, otherwise the kernel's choice].
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Worker processes to split the users over [default: as few as the open-file limit allows].
    #[arg(long)]
    pub workers: Option<u64>,
}

impl TargetArgs {
    /// The targets (TLS roots loaded and parsed, so that a worker cannot fail on them later,
    /// [`Target::from_flags`]) and the source addresses to connect from, chosen for the first
    /// target.
    pub(crate) fn resolve(&self) -> Result<(Vec<Target>, Vec<IpAddr>), String> {
        let targets = self
            .url
            .iter()
            .map(|url| Target::from_flags(url, self.ca_file.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let first = targets.first().ok_or("--url: give at least one")?;
        let sources = net::choose_sources(self.source_ips.as_deref(), first)?;
        Ok((targets, sources))
    }
}
