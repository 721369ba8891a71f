//! Measurements: the HDR histograms and counters one process records while users run, cut
//! into one-second [`Snapshot`]s that can cross a process boundary (workers) and be merged.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram tracks (1 hour, in microseconds); larger values saturate.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static histogram bounds are valid")
}

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Reset,
    Timeout,
    /// The upgrade was answered with this HTTP status instead of 101.
    HttpStatus(u16),
    /// The server broke protocol v1 (no `connection_established` first, bad JSON...).
    Protocol,
    /// TLS refused the server (certificate not trusted or not for this host) or failed.
    Tls,
    /// No local address or port was available (ephemeral ports, source address).
    AddressUnavailable,
    /// Still connecting when the run (or a ramp-down) no longer wanted the user.
    Unfinished,
    Other,
}

impl ConnectFailure {
    /// The key under which the report counts this failure.
    pub fn label(self) -> String {
        match self {
            Self::Refused => "refused".into(),
            Self::Reset => "reset".into(),
            Self::Timeout => "timeout".into(),
            Self::HttpStatus(code) => format!("http_{code}"),
            Self::Protocol => "protocol".into(),
            Self::Tls => "tls".into(),
            Self::AddressUnavailable => "address_unavailable".into(),
            Self::Unfinished => "unfinished".into(),
            Self::Other => "other".into(),
        }
    }
}

/// Event counts over some window. Every field adds up when windows or processes merge.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Connection attempts (first connects and reconnects).
    pub connect_attempts: u64,
    /// Attempts that reached `connection_established`.
    pub connects: u64,
    /// Attempts made after the server ended an established connection.
    pub reconnects: u64,
    /// Failed attempts by [`ConnectFailure::label`].
    pub connect_failures: BTreeMap<String, u64>,
    /// `message`s written.
    pub sent: u64,
    /// `message_response`s matched to a pending `message` in time.
    pub answered: u64,
    /// `message`s answered with an `error` carrying their `id`.
    pub errored: u64,
    /// `message`s not answered within the timeout.
    pub timed_out: u64,
    /// `message`s still pending when their connection ended.
    pub unanswered: u64,
    /// `message`s due on the open-loop schedule but not yet written when the user stopped:
    /// the server read too slowly to take them (they count as failed, not as nothing).
    pub unsent: u64,
    /// `message_response`s that came after their message had timed out.
    pub late: u64,
    /// Protocol violations seen on established connections (bad JSON, unknown id...).
    pub protocol_errors: u64,
    /// `error` messages received, by `code`.
    pub server_errors: BTreeMap<String, u64>,
    /// Connections the server ended, by close code (`"none"`: no close frame).
    pub close_codes: BTreeMap<String, u64>,
    /// `goodbye` messages received, by `reason`.
    pub goodbye_reasons: BTreeMap<String, u64>,
    /// The channel scenarios' counts (zero in the others).
    pub channels: crate::channels::ChannelCounts,
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (key, n) in from {
        *into.entry(key.clone()).or_default() += n;
    }
}

/// Adds one to `map[key]`.
pub fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

impl Counts {
    pub fn merge(&mut self, other: &Counts) {
        self.connect_attempts += other.connect_attempts;
        self.connects += other.connects;
        self.reconnects += other.reconnects;
        add_map(&mut self.connect_failures, &other.connect_failures);
        self.sent += other.sent;
        self.answered += other.answered;
        self.errored += other.errored;
        self.timed_out += other.timed_out;
        self.unanswered += other.unanswered;
        self.unsent += other.unsent;
        self.late += other.late;
        self.protocol_errors += other.protocol_errors;
        add_map(&mut self.server_errors, &other.server_errors);
        add_map(&mut self.close_codes, &other.close_codes);
        add_map(&mut self.goodbye_reasons, &other.goodbye_reasons);
        self.channels.merge(&other.channels);
    }

    /// Failed connection attempts of every kind.
    pub fn connect_failed(&self) -> u64 {
        self.connect_failures.values().sum()
    }

    /// Messages that got no good answer: errored, timed out, lost with their connection, or
    /// never sent although due.
    pub fn messages_failed(&self) -> u64 {
        self.errored + self.timed_out + self.unanswered + self.unsent
    }

    /// Messages the schedule called for: those sent and those due but not sent.
    pub fn messages_due(&self) -> u64 {
        self.sent + self.unsent
    }
}

/// What one process measured during one second of the run (or, merged, many processes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Seconds since the start of the run at the end of this window (1 = first second).
    pub second: u32,
    /// Established connections at the end of the window.
    pub active: u64,
    pub counts: Counts,
    /// TCP connect to `connection_established`.
    #[serde(with = "wire_histogram")]
    pub connect: Histogram<u64>,
    /// Scheduled send time to `message_response`.
    #[serde(with = "wire_histogram")]
    pub round_trip: Histogram<u64>,
    /// Channel scenarios: a publication's send time (its publisher's clock) to its receipt.
    #[serde(with = "wire_histogram")]
    pub delivery: Histogram<u64>,
}

impl Snapshot {
    pub fn empty(second: u32) -> Self {
        Snapshot {
            second,
            active: 0,
            counts: Counts::default(),
            connect: new_histogram(),
            round_trip: new_histogram(),
            delivery: new_histogram(),
        }
    }

    /// Adds `other` (same second, another process) into `self`.
    pub fn merge(&mut self, other: &Snapshot) {
        self.active += other.active;
        self.counts.merge(&other.counts);
        self.connect
            .add(&other.connect)
            .expect("histograms share bounds");
        self.round_trip
            .add(&other.round_trip)
            .expect("histograms share bounds");
        self.delivery
            .add(&other.delivery)
            .expect("histograms share bounds");
    }
}

/// Histograms travel between processes as base64 of the HdrHistogram V2 encoding, the
/// format every HdrHistogram implementation reads.
mod wire_histogram {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use hdrhistogram::Histogram;
    use hdrhistogram::serialization::{
        Deserializer as HdrDeserializer, Serializer as _, V2Serializer,
    };
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .map_err(|e| serde::ser::Error::custom(format!("histogram encoding: {e:?}")))?;
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let text = <&str>::deserialize(d)?;
        let bytes = STANDARD.decode(text).map_err(D::Error::custom)?;
        let decoded: Histogram<u64> = HdrDeserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| D::Error::custom(format!("histogram decoding: {e:?}")))?;
        // Re-home the values in a histogram with our bounds so that merging cannot fail.
        let mut h = super::new_histogram();
        h.add(&decoded)
            .map_err(|e| D::Error::custom(format!("histogram bounds: {e:?}")))?;
        Ok(h)
    }
}

/// Where the users of one process record, shared by all of them. Cheap uncontended locks:
/// a user touches it a few times per message.
pub struct Recorder {
    window: Mutex<Window>,
    active: AtomicU64,
}

struct Window {
    counts: Counts,
    connect: Histogram<u64>,
    round_trip: Histogram<u64>,
    delivery: Histogram<u64>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            window: Mutex::new(Window {
                counts: Counts::default(),
                connect: new_histogram(),
                round_trip: new_histogram(),
                delivery: new_histogram(),
            }),
            active: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    fn with<R>(&self, f: impl FnOnce(&mut Window) -> R) -> R {
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut w)
    }

    /// Updates the counters.
    pub fn count(&self, f: impl FnOnce(&mut Counts)) {
        self.with(|w| f(&mut w.counts));
    }

    pub fn connected(&self, took: Duration, reconnect: bool) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.with(|w| {
            w.counts.connect_attempts += 1;
            w.counts.connects += 1;
            w.counts.reconnects += u64::from(reconnect);
            w.connect.saturating_record(micros(took));
        });
    }

    pub fn disconnected(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connect_failed(&self, failure: ConnectFailure, reconnect: bool) {
        self.with(|w| {
            w.counts.connect_attempts += 1;
            w.counts.reconnects += u64::from(reconnect);
            bump(&mut w.counts.connect_failures, &failure.label());
        });
    }

    pub fn answered(&self, round_trip: Duration) {
        self.with(|w| {
            w.counts.answered += 1;
            w.round_trip.saturating_record(micros(round_trip));
        });
    }

    /// Closes the current window as the snapshot of `second` and opens a new one.
    /// A publication received in order on a subscription, `latency` after it was published.
    pub fn delivered(&self, latency: Duration) {
        self.with(|w| {
            w.counts.channels.deliveries += 1;
            w.delivery.saturating_record(micros(latency));
        });
    }

    pub fn take(&self, second: u32) -> Snapshot {
        let active = self.active.load(Ordering::Relaxed);
        self.with(|w| Snapshot {
            second,
            active,
            counts: std::mem::take(&mut w.counts),
            connect: std::mem::replace(&mut w.connect, new_histogram()),
            round_trip: std::mem::replace(&mut w.round_trip, new_histogram()),
            delivery: std::mem::replace(&mut w.delivery, new_histogram()),
        })
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Converts a histogram value (microseconds) to milliseconds.
pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl LatencySummary {
    /// `None` when the histogram holds no value.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let q = |quantile| ms(h.value_at_quantile(quantile));
        Some(LatencySummary {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(h.max()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_with(second: u32, rtts_ms: &[u64]) -> Snapshot {
        let mut s = Snapshot::empty(second);
        for &v in rtts_ms {
            s.round_trip.record(v * 1000).unwrap();
        }
        s.counts.sent = rtts_ms.len() as u64;
        s.counts.answered = rtts_ms.len() as u64;
        s
    }

    #[test]
    fn merged_percentiles_equal_those_of_all_values_together() {
        let mut a = snapshot_with(1, &(1..=50).collect::<Vec<_>>());
        let b = snapshot_with(1, &(51..=100).collect::<Vec<_>>());
        a.merge(&b);
        let summary = LatencySummary::of(&a.round_trip).unwrap();
        assert_eq!(summary.count, 100);
        assert!((summary.p50_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p95_ms - 95.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 100.0).abs() < 0.1, "{summary:?}");
        assert_eq!(a.counts.answered, 100);
    }

    #[test]
    fn counts_merge_adds_every_field_and_map() {
        let mut a = Counts {
            sent: 3,
            timed_out: 1,
            ..Counts::default()
        };
        bump(&mut a.close_codes, "1001");
        bump(&mut a.connect_failures, "refused");
        let mut b = Counts {
            sent: 2,
            errored: 4,
            unanswered: 1,
            unsent: 2,
            ..Counts::default()
        };
        bump(&mut b.close_codes, "1001");
        bump(&mut b.close_codes, "1000");
        a.merge(&b);
        assert_eq!(a.sent, 5);
        assert_eq!(a.messages_due(), 7);
        assert_eq!(a.messages_failed(), 8);
        assert_eq!(a.close_codes["1001"], 2);
        assert_eq!(a.close_codes["1000"], 1);
        assert_eq!(a.connect_failed(), 1);
    }

    #[test]
    fn snapshot_survives_the_wire_between_processes() {
        let mut s = snapshot_with(7, &[1, 2, 3, 250]);
        s.connect.record(1234).unwrap();
        s.active = 42;
        bump(&mut s.counts.goodbye_reasons, "server_shutdown");
        let line = serde_json::to_string(&s).unwrap();
        let back: Snapshot = serde_json::from_str(&line).unwrap();
        assert_eq!(back.second, 7);
        assert_eq!(back.active, 42);
        assert_eq!(back.counts, s.counts);
        assert_eq!(back.round_trip, s.round_trip);
        assert_eq!(back.connect.max(), s.connect.max());
    }

    #[test]
    fn corrupt_histogram_on_the_wire_is_an_error_not_a_panic() {
        let mut value = serde_json::to_value(Snapshot::empty(1)).unwrap();
        value["round_trip"] = serde_json::Value::String("bm90IGEgaGlzdG9ncmFt".into());
        assert!(serde_json::from_value::<Snapshot>(value).is_err());
    }

    #[test]
    fn recorder_windows_do_not_overlap() {
        let r = Recorder::default();
        r.connected(Duration::from_millis(3), false);
        r.answered(Duration::from_millis(5));
        r.connect_failed(ConnectFailure::HttpStatus(503), true);
        let first = r.take(1);
        assert_eq!(first.counts.connects, 1);
        assert_eq!(first.counts.connect_failures["http_503"], 1);
        assert_eq!(first.counts.reconnects, 1);
        assert_eq!(first.round_trip.len(), 1);
        assert_eq!(first.active, 1);
        let second = r.take(2);
        assert_eq!(second.counts, Counts::default());
        assert!(second.round_trip.is_empty());
        assert_eq!(second.active, 1, "the gauge persists across windows");
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        assert_eq!(LatencySummary::of(&new_histogram()), None);
    }
}
