//! The cap on connections waiting for their upgrade (issue 14): `MAX_PENDING_HTTP` overall and
//! `MAX_PENDING_HTTP_PER_IP` per client address (the TCP peer, grouped by IPv6 prefix: no header
//! is read yet; `TRUSTED_PROXIES` peers are exempt, they carry everyone). A connection over
//! either is closed at once; one within holds a [`PendingSlot`] until hyper lets go of it
//! (upgraded or closed), so that with hyper's head bound the memory of every waiting
//! connection together is bounded too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::http::{client_key, is_trusted};
use crate::metrics::HttpRefusal;
use crate::state::AppState;

/// Counts of the connections waiting for their upgrade on the public listener.
pub struct PendingGate {
    state: Arc<AppState>,
    counts: Mutex<Counts>,
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
}

impl PendingGate {
    pub fn new(state: Arc<AppState>) -> Arc<PendingGate> {
        Arc::new(PendingGate {
            state,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Every update is a single step on plain integers: a poisoned lock is still consistent.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `peer`, or why there is none (counted).
    pub fn enter(self: &Arc<Self>, peer: IpAddr) -> Result<PendingSlot, HttpRefusal> {
        let config = &self.state.config;
        let limits = &config.http;
        let client = (!is_trusted(peer, &config.trusted_proxies))
            .then(|| client_key(peer, limits.client_ipv6_prefix));
        let mut counts = self.counts();
        let refusal = if counts.total >= limits.max_pending_http {
            Some(HttpRefusal::PendingLimit)
        } else if let Some(client) = client
            && limits.max_pending_http_per_ip > 0
            && counts.per_client.get(&client).copied().unwrap_or(0)
                >= limits.max_pending_http_per_ip
        {
            Some(HttpRefusal::PendingIpLimit)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            drop(counts);
            self.state.metrics.http.refused(refusal);
            return Err(refusal);
        }
        counts.total += 1;
        if let Some(client) = client {
            *counts.per_client.entry(client).or_insert(0) += 1;
        }
        drop(counts);
        self.state.metrics.http.pending.inc();
        Ok(PendingSlot {
            gate: Arc::clone(self),
            client,
        })
    }

    /// Counts a connection hyper ended with `error`: a head too large (`431`) or not complete
    /// in time (only before any request: an idle keep-alive closing is no refusal).
    pub fn ended_with(&self, error: &hyper::Error, served_a_request: bool) {
        let refusal = if error.is_parse_too_large() {
            HttpRefusal::HeaderTooLarge
        } else if error.is_timeout() && !served_a_request {
            HttpRefusal::HeaderTimeout
        } else {
            return;
        };
        self.state.metrics.http.refused(refusal);
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self.gate.counts();
        counts.total -= 1;
        if let Some(client) = self.client
            && let Some(count) = counts.per_client.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                counts.per_client.remove(&client);
            }
        }
        drop(counts);
        self.gate.state.metrics.http.pending.dec();
    }
}
