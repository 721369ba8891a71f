//! The listening sockets: adopted from systemd socket activation (`LISTEN_FDS`, names `ws` and
//! `metrics` from `LISTEN_FDNAMES`; a single unnamed socket is the public one; every further
//! socket named `ws` is served alike: the direct data path's shared public address next to
//! the colour's own loopback port, docs/deploy.md), or bound here
//! with a backlog large enough for connection bursts (tokio's `bind` uses 128, which
//! overflows and costs clients 1 s SYN retries). What a previous process left in the file
//! descriptor store for a handover comes the same way, by name.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{FromRawFd, OwnedFd};

use listenfd::ListenFd;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;

/// Backlog of the public socket (the kernel caps it at `net.core.somaxconn`).
pub const PUBLIC_BACKLOG: i32 = 4096;
const METRICS_BACKLOG: i32 = 128;

/// Where each socket came from.
#[derive(Debug)]
pub struct Sockets {
    pub public: StdListener,
    /// Further sockets named `ws` (the direct data path's reuseport address), served like
    /// `public`.
    pub also_public: Vec<StdListener>,
    /// `None`: bind `METRICS_ADDR`.
    pub metrics: Option<StdListener>,
    pub activated: bool,
    /// The store's entries of a handover, by name.
    pub handover: Vec<(String, OwnedFd)>,
}

/// The fd store's entry of a handover's sockets (docs/handover.md).
pub const HANDOVER_CONNS: &str = "handover-conns";
/// The fd store's entry of a handover's state.
pub const HANDOVER_STATE: &str = "handover-state";
const HANDOVER_NAMES: [&str; 2] = [HANDOVER_CONNS, HANDOVER_STATE];

/// Binds `addr` with SO_REUSEADDR and the given backlog, non-blocking.
pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub fn bind_metrics(addr: SocketAddr) -> io::Result<StdListener> {
    bind(addr, METRICS_BACKLOG)
}

/// The sockets systemd passed, if any (`LISTEN_FDS` set), else a freshly bound public socket.
pub fn open(public_addr: SocketAddr) -> io::Result<Sockets> {
    let mut fds = ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(Sockets {
            public: bind(public_addr, PUBLIC_BACKLOG)?,
            also_public: Vec::new(),
            metrics: None,
            activated: false,
            handover: Vec::new(),
        });
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let index_of = |wanted: &str| names.iter().position(|name| name == wanted);
    let public_index = match index_of("ws") {
        Some(index) => index,
        None if fds.len() == 1 => 0,
        None => {
            return Err(io::Error::other(format!(
                "systemd passed {} sockets but none is named `ws` (LISTEN_FDNAMES={:?})",
                fds.len(),
                names.join(":")
            )));
        }
    };
    let public = take(&mut fds, public_index, "ws")?;
    let also_public = (public_index + 1..names.len())
        .filter(|&index| names[index] == "ws")
        .map(|index| take(&mut fds, index, "ws"))
        .collect::<io::Result<Vec<_>>>()?;
    let metrics = match index_of("metrics") {
        Some(index) if index != public_index => Some(take(&mut fds, index, "metrics")?),
        _ => None,
    };
    let mut handover = Vec::new();
    for (index, name) in names.iter().enumerate() {
        if HANDOVER_NAMES.contains(&name.as_str())
            && let Some(fd) = fds.take_raw_fd(index)?
        {
            // Ours from here: LISTEN_FDS handed it to this process and nothing else took it.
            handover.push((name.clone(), unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok(Sockets {
        public,
        also_public,
        metrics,
        activated: true,
        handover,
    })
}

fn take(fds: &mut ListenFd, index: usize, name: &str) -> io::Result<StdListener> {
    let listener = fds.take_tcp_listener(index)?.ok_or_else(|| {
        io::Error::other(format!(
            "systemd socket `{name}` (fd {}) is not available",
            index + 3
        ))
    })?;
    // systemd hands sockets over in blocking mode; tokio needs them non-blocking.
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The listening sockets: public and metrics, and whether systemd passed them.
pub(crate) struct OpenSockets {
    pub(crate) public: StdListener,
    pub(crate) also_public: Vec<StdListener>,
    pub(crate) metrics: StdListener,
    pub(crate) activated: bool,
    pub(crate) handover: Vec<(String, OwnedFd)>,
}

/// Opens the public socket (systemd's or bound here) and the metrics socket (systemd's
/// `metrics` or `METRICS_ADDR`).
pub(crate) fn open_sockets(config: &Config) -> Result<OpenSockets, String> {
    let Sockets {
        public,
        also_public,
        metrics,
        activated,
        handover,
    } = open(config.listen_addr())
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen_addr()))?;
    let metrics = match metrics {
        Some(metrics) => metrics,
        None => bind_metrics(config.metrics_addr)
            .map_err(|e| format!("cannot listen on METRICS_ADDR {}: {e}", config.metrics_addr))?,
    };
    Ok(OpenSockets {
        public,
        also_public,
        metrics,
        activated,
        handover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_a_large_backlog_on_a_free_port() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), PUBLIC_BACKLOG).unwrap();
        assert_ne!(listener.local_addr().unwrap().port(), 0);
    }
}
