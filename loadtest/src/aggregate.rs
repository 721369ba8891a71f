//! Merges the per-second snapshots of every source (the process itself, or each worker)
//! into one timeline and one set of totals.

use std::collections::BTreeMap;

use crate::stats::Snapshot;

pub struct Aggregate {
    /// Last second each source reported (0 = none yet); `None` once it is finished.
    reported: Vec<Option<u32>>,
    seconds: BTreeMap<u32, Snapshot>,
    totals: Snapshot,
}

impl Aggregate {
    pub fn new(sources: usize) -> Self {
        Aggregate {
            reported: vec![Some(0); sources],
            seconds: BTreeMap::new(),
            totals: Snapshot::empty(0),
        }
    }

    pub fn add(&mut self, source: usize, snapshot: &Snapshot) {
        self.totals.merge(snapshot);
        self.seconds
            .entry(snapshot.second)
            .or_insert_with(|| Snapshot::empty(snapshot.second))
            .merge(snapshot);
        if let Some(Some(last)) = self.reported.get_mut(source) {
            *last = (*last).max(snapshot.second);
        }
    }

    pub fn finish(&mut self, source: usize) {
        if let Some(state) = self.reported.get_mut(source) {
            *state = None;
        }
    }

    /// The latest second every running source has reported, merged.
    pub fn latest_complete(&self) -> Option<&Snapshot> {
        let second = self
            .reported
            .iter()
            .flatten()
            .min()
            .copied()
            .or_else(|| self.seconds.keys().next_back().copied())?;
        self.seconds.get(&second)
    }

    /// Everything measured, all seconds and sources together (`active` is meaningless here).
    pub fn totals(&self) -> &Snapshot {
        &self.totals
    }

    /// Merged snapshots, one per second, in order.
    pub fn timeline(&self) -> impl Iterator<Item = &Snapshot> {
        self.seconds.values()
    }

    pub fn peak_active(&self) -> u64 {
        self.seconds.values().map(|s| s.active).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(second: u32, active: u64, answered_ms: &[u64]) -> Snapshot {
        let mut s = Snapshot::empty(second);
        s.active = active;
        for &v in answered_ms {
            s.round_trip.record(v * 1000).unwrap();
            s.counts.answered += 1;
        }
        s
    }

    #[test]
    fn seconds_from_different_workers_add_up() {
        let mut agg = Aggregate::new(2);
        agg.add(0, &snap(1, 10, &[1, 2]));
        assert!(
            agg.latest_complete().is_none(),
            "worker 1 has not reported second 1"
        );
        agg.add(1, &snap(1, 15, &[3]));
        let s1 = agg.latest_complete().unwrap();
        assert_eq!((s1.second, s1.active, s1.counts.answered), (1, 25, 3));
        agg.add(0, &snap(2, 12, &[]));
        assert_eq!(agg.latest_complete().unwrap().second, 1);
        agg.add(1, &snap(2, 20, &[9]));
        assert_eq!(agg.latest_complete().unwrap().active, 32);
        assert_eq!(agg.peak_active(), 32);
        assert_eq!(agg.totals().counts.answered, 4);
        assert_eq!(agg.totals().round_trip.len(), 4);
        assert!(
            agg.totals()
                .round_trip
                .equivalent(agg.totals().round_trip.max(), 9000)
        );
        assert_eq!(agg.timeline().map(|s| s.second).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_finished_worker_no_longer_holds_the_progress_back() {
        let mut agg = Aggregate::new(2);
        agg.add(0, &snap(1, 1, &[]));
        agg.add(0, &snap(2, 1, &[]));
        agg.add(1, &snap(1, 1, &[]));
        agg.finish(1);
        assert_eq!(agg.latest_complete().unwrap().second, 2);
    }
}
