//! The cap on connections waiting for their upgrade (issue 14): `MAX_PENDING_HTTP` overall and
//! `MAX_PENDING_HTTP_PER_IP` per client address (the TCP peer, grouped by IPv6 prefix: no HTTP
//! header is read yet; `TRUSTED_PROXIES` peers are exempt, they carry everyone, and so are the
//! `PROXY_PROTOCOL_TRUSTED` balancers until their PROXY header names the client, who is then
//! counted instead). A connection over either is closed at once; one within holds a
//! [`PendingSlot`] until hyper lets go of it (upgraded or closed), so that with hyper's head
//! bound the memory of every waiting connection together is bounded too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::ProxyProtocol;
use crate::http::{client_key, is_trusted};
use crate::metrics::HttpRefusal;
use crate::state::AppState;

/// Counts of the connections waiting for their upgrade on the public listener.
pub struct PendingGate {
    state: Arc<AppState>,
    counts: Mutex<Counts>,
    /// Connections accepted whose first request has no response yet: a handover waits for
    /// them, since stopping HTTP would close them unanswered.
    unanswered: AtomicUsize,
}

#[derive(Default)]
struct Counts {
    total: u32,
    per_client: HashMap<IpAddr, u32>,
}

/// One waiting connection's place; dropping it frees the place.
pub struct PendingSlot {
    gate: Arc<PendingGate>,
    /// The per-client key, `None` for an exempt peer.
    client: Option<IpAddr>,
    first_answer: Arc<FirstAnswer>,
}

/// Whether a connection's first request was answered; until then (or until the connection
/// ends) it counts among its gate's unanswered connections.
pub struct FirstAnswer {
    gate: Arc<PendingGate>,
    given: AtomicBool,
}

impl FirstAnswer {
    /// The response to the connection's first request is ready (later calls do nothing).
    pub fn given(&self) {
        if !self.given.swap(true, Ordering::AcqRel) {
            self.gate.unanswered.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl PendingGate {
    pub fn new(state: Arc<AppState>) -> Arc<PendingGate> {
        Arc::new(PendingGate {
            state,
            counts: Mutex::new(Counts::default()),
            unanswered: AtomicUsize::new(0),
        })
    }

    /// Connections accepted whose first request has no response yet.
    pub fn unanswered(&self) -> usize {
        self.unanswered.load(Ordering::Acquire)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Every update is a single step on plain integers: a poisoned lock is still consistent.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The per-client key of `ip`; `None` for a peer that carries other clients (exempt).
    fn key_of(&self, ip: IpAddr) -> Option<IpAddr> {
        let config = &self.state.config;
        let carries_others = is_trusted(ip, &config.trusted_proxies)
            || (config.edge.proxy_protocol != ProxyProtocol::Off
                && is_trusted(ip, &config.edge.proxy_protocol_trusted));
        (!carries_others).then(|| client_key(ip, config.http.client_ipv6_prefix))
    }

    /// Whether `client` has as many connections waiting as `MAX_PENDING_HTTP_PER_IP` allows.
    fn client_is_full(&self, counts: &Counts, client: IpAddr) -> bool {
        let limit = self.state.config.http.max_pending_http_per_ip;
        limit > 0 && counts.per_client.get(&client).copied().unwrap_or(0) >= limit
    }

    fn refuse(&self, refusal: HttpRefusal) -> HttpRefusal {
        self.state.metrics.http.refused(refusal);
        refusal
    }

    /// A place for a connection from `peer`, or why there is none (counted).
    pub fn enter(self: &Arc<Self>, peer: IpAddr) -> Result<PendingSlot, HttpRefusal> {
        let client = self.key_of(peer);
        let mut counts = self.counts();
        if counts.total >= self.state.config.http.max_pending_http {
            drop(counts);
            return Err(self.refuse(HttpRefusal::PendingLimit));
        }
        if let Some(client) = client
            && self.client_is_full(&counts, client)
        {
            drop(counts);
            return Err(self.refuse(HttpRefusal::PendingIpLimit));
        }
        counts.total += 1;
        if let Some(client) = client {
            *counts.per_client.entry(client).or_insert(0) += 1;
        }
        drop(counts);
        self.state.metrics.http.pending.inc();
        self.unanswered.fetch_add(1, Ordering::AcqRel);
        Ok(PendingSlot {
            gate: Arc::clone(self),
            client,
            first_answer: Arc::new(FirstAnswer {
                gate: Arc::clone(self),
                given: AtomicBool::new(false),
            }),
        })
    }

    /// Counts a connection hyper ended with `error`: a head too large (`431`) or not complete
    /// in time (only before its first answer: an idle keep-alive closing is no refusal).
    fn ended_with(&self, error: &hyper::Error, answered: bool) {
        let refusal = if error.is_parse_too_large() {
            HttpRefusal::HeaderTooLarge
        } else if error.is_timeout() && !answered {
            HttpRefusal::HeaderTimeout
        } else {
            return;
        };
        self.state.metrics.http.refused(refusal);
    }
}

impl Counts {
    fn release(&mut self, client: Option<IpAddr>) {
        if let Some(client) = client
            && let Some(count) = self.per_client.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                self.per_client.remove(&client);
            }
        }
    }
}

impl PendingSlot {
    /// Counts how hyper ended the connection with `error` (a refusal only before its first
    /// answer, see [`PendingGate::ended_with`]), and frees the place.
    pub fn ended_with(self, error: &hyper::Error) {
        let answered = self.first_answer.given.load(Ordering::Acquire);
        self.gate.ended_with(error, answered);
    }

    /// What the connection's service marks when it has answered the first request.
    pub fn first_answer(&self) -> Arc<FirstAnswer> {
        Arc::clone(&self.first_answer)
    }

    /// Counts this connection under `client`, the address its PROXY header names, instead of
    /// the balancer that carried it; refused (counted) when `client` has its share waiting.
    pub fn attribute(&mut self, client: IpAddr) -> Result<(), HttpRefusal> {
        let client = self.gate.key_of(client);
        if client == self.client {
            return Ok(());
        }
        let mut counts = self.gate.counts();
        if let Some(client) = client
            && self.gate.client_is_full(&counts, client)
        {
            drop(counts);
            return Err(self.gate.refuse(HttpRefusal::PendingIpLimit));
        }
        counts.release(self.client);
        if let Some(client) = client {
            *counts.per_client.entry(client).or_insert(0) += 1;
        }
        self.client = client;
        Ok(())
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        // Upgraded or closed: an unanswered connection is no longer waiting for an answer.
        self.first_answer.given();
        let mut counts = self.gate.counts();
        counts.total -= 1;
        counts.release(self.client);
        drop(counts);
        self.gate.state.metrics.http.pending.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn gate(args: &[&str]) -> Arc<PendingGate> {
        let mut argv = vec!["concurrent-socket", "--server-id", "t"];
        argv.extend_from_slice(args);
        let cli = crate::config::Cli::try_parse_from(argv).unwrap();
        let config = crate::config::Config::from_raw(&cli.settings).unwrap();
        PendingGate::new(AppState::new(config, false))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_balancers_connections_count_under_the_clients_its_headers_name() {
        let gate = gate(&[
            "--max-pending-http-per-ip",
            "1",
            "--proxy-protocol",
            "v2",
            "--proxy-protocol-trusted",
            "10.0.0.0/24",
        ]);
        let balancer = ip("10.0.0.7");
        let mut first = gate.enter(balancer).expect("a balancer is exempt");
        let mut second = gate.enter(balancer).expect("a balancer is exempt");
        first.attribute(ip("203.0.113.1")).unwrap();
        assert_eq!(
            second.attribute(ip("203.0.113.1")),
            Err(HttpRefusal::PendingIpLimit),
            "the client's share is taken"
        );
        second.attribute(ip("203.0.113.2")).unwrap();
        assert!(gate.enter(ip("203.0.113.2")).is_err(), "counted under it");
        drop(second);
        assert!(gate.enter(ip("203.0.113.2")).is_ok(), "and freed with it");
        assert_eq!(gate.counts().total, 1, "the first one waits still");
    }

    #[tokio::test]
    async fn a_connection_is_unanswered_until_its_first_answer_or_its_end() {
        let gate = gate(&[]);
        let answered = gate.enter(ip("192.0.2.1")).unwrap();
        let closed = gate.enter(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.unanswered(), 2);
        let first_answer = answered.first_answer();
        first_answer.given();
        first_answer.given();
        assert_eq!(
            gate.unanswered(),
            1,
            "counted once, however often the service says so"
        );
        drop(closed);
        assert_eq!(gate.unanswered(), 0);
        drop(answered);
        assert_eq!(
            gate.unanswered(),
            0,
            "a keep-alive connection answered waits for nothing"
        );
    }

    #[tokio::test]
    async fn without_proxy_protocol_the_balancer_is_a_client_like_any() {
        let gate = gate(&[
            "--max-pending-http-per-ip",
            "1",
            "--proxy-protocol-trusted",
            "10.0.0.0/24",
        ]);
        let _first = gate.enter(ip("10.0.0.7")).unwrap();
        assert!(gate.enter(ip("10.0.0.7")).is_err());
    }
}
