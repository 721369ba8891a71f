//! What a channel user knows of its channel from one connection to the next, and the
//! accounting of everything that arrives against it (no sockets here):
//! - offsets: on one subscription each publication must follow the last one by exactly one; a
//!   skipped offset is missing, one already received a duplicate, a skipped one that arrives
//!   after a later one out of order;
//! - the user's own acknowledged publications: each `published` (offset, epoch) must come back
//!   on the user's subscription to the channel as a publication `from` the user at that
//!   offset; one that does not is an acknowledged publication lost (or excused when the
//!   server said `recovered: false`: the broker lost the history);
//! - resubscriptions: `recovered` or not, and whether the epoch changed.
//!
//! The counts go to [`ChannelMemory::take_tally`], which the session adds to the recorder.

use std::collections::{BTreeSet, VecDeque};

use crate::channels::ChannelCounts;

/// Skipped offsets remembered per subscription (to tell a late one from a duplicate).
const MAX_SKIPPED: usize = 10_000;
/// Offsets of the user's own publications remembered, for `published` answers that come after
/// the publication itself.
const OWN_RECENT: usize = 256;

#[derive(Debug, Default)]
pub(super) struct ChannelMemory {
    /// The channel's epoch once subscribed, and the newest offset received.
    epoch: Option<String>,
    last: u64,
    /// Offsets skipped on the current subscription.
    skipped: BTreeSet<u64>,
    /// Own publications acknowledged (epoch, offset) and not yet received back.
    acked: Vec<(String, u64)>,
    /// Offsets of own publications received lately (current epoch).
    own_recent: VecDeque<u64>,
    /// The last `recovered: false` answer's epoch and offset: acknowledgements at or below
    /// it that arrive after it are excused too.
    excused: Option<(String, u64)>,
    /// Counts not yet handed to the recorder.
    tally: ChannelCounts,
}

impl ChannelMemory {
    /// Where to `recover` from, once subscribed before.
    pub(super) fn recover_from(&self) -> Option<(u64, &str)> {
        self.epoch.as_deref().map(|epoch| (self.last, epoch))
    }

    /// The counts since the last call.
    pub(super) fn take_tally(&mut self) -> Option<ChannelCounts> {
        (self.tally != ChannelCounts::default()).then(|| std::mem::take(&mut self.tally))
    }

    /// A `subscribed` answer (its `publications`, when recovered, follow through
    /// [`ChannelMemory::receive`]).
    pub(super) fn subscribed(&mut self, epoch: String, offset: u64, recovered: Option<bool>) {
        self.skipped.clear();
        let same_epoch = self.epoch.as_deref() == Some(epoch.as_str());
        if recovered.is_some() && !same_epoch {
            self.tally.epoch_changes += 1;
        }
        match recovered {
            None => {
                self.last = offset;
                self.tally.published_before_joining += offset;
            }
            Some(true) => self.tally.recovered += 1,
            Some(false) => {
                self.tally.not_recovered += 1;
                if same_epoch {
                    self.tally.missing += offset.saturating_sub(self.last);
                }
                // What the answer's offset covers will never come: excused by the answer.
                // Acknowledgements in its epoch above it are publications still on their way.
                let before = self.acked.len();
                self.acked.retain(|(e, k)| *e == epoch && *k > offset);
                self.tally.acked_unrecovered += (before - self.acked.len()) as u64;
                self.last = offset;
                self.excused = Some((epoch.clone(), offset));
            }
        }
        if !same_epoch {
            self.own_recent.clear();
        }
        self.epoch = Some(epoch);
    }

    /// A publication on the subscription; true when it is the next one (a delivery).
    pub(super) fn receive(&mut self, offset: u64, own: bool) -> bool {
        let last = self.last;
        if offset <= last {
            if self.skipped.remove(&offset) {
                self.tally.out_of_order += 1;
            } else {
                self.tally.duplicates += 1;
            }
            return false;
        }
        if offset > last + 1 {
            self.tally.missing += offset - last - 1;
            let room = MAX_SKIPPED.saturating_sub(self.skipped.len());
            self.skipped.extend((last + 1..offset).take(room));
        }
        self.last = offset;
        if own {
            if self.own_recent.len() == OWN_RECENT {
                self.own_recent.pop_front();
            }
            self.own_recent.push_back(offset);
        }
        if !self.acked.is_empty() {
            self.settle_acks(offset, own);
        }
        true
    }

    /// A publication of a recovery's `publications`: received like a live one, and counted
    /// as recovered when it is the next one.
    pub(super) fn recovered_publication(&mut self, offset: u64, own: bool) {
        if self.receive(offset, own) {
            self.tally.recovered_publications += 1;
        }
    }

    /// Acknowledgements of the current epoch at or below the newest offset are settled: the
    /// one at `offset` by this publication (lost when it is someone else's), those below it
    /// by a publication received earlier.
    fn settle_acks(&mut self, offset: u64, own: bool) {
        let Some(epoch) = self.epoch.as_deref() else {
            return;
        };
        let (last, own_recent) = (self.last, &self.own_recent);
        let mut lost = 0;
        self.acked.retain(|(e, k)| {
            if e != epoch || *k > last {
                return true;
            }
            let came_back = if *k == offset {
                own
            } else {
                own_recent.contains(k)
            };
            lost += u64::from(!came_back);
            false
        });
        self.tally.acked_lost += lost;
    }

    /// A `published` answer to one of the user's `publish`es; `subscribed`: whether the user
    /// subscribes to the channel (only then can it check that the publication comes back).
    pub(super) fn acknowledged(&mut self, epoch: String, offset: u64, subscribed: bool) {
        self.tally.published += 1;
        if !subscribed {
            return;
        }
        if self.epoch.as_deref() == Some(epoch.as_str()) && offset <= self.last {
            // Its offset went by already: it must have been one of ours, or been covered by
            // a `recovered: false` (answered before this acknowledgement).
            let came_back = self.own_recent.contains(&offset);
            let excused = !came_back
                && self
                    .excused
                    .as_ref()
                    .is_some_and(|(e, k)| *e == epoch && offset <= *k);
            self.tally.acked_unrecovered += u64::from(excused);
            self.tally.acked_lost += u64::from(!came_back && !excused);
        } else {
            self.acked.push((epoch, offset));
        }
    }

    /// The run's last look at the channel (a `subscribed` answer to a `recover` from the
    /// newest offset received): what the channel has beyond it was never received live, and
    /// own acknowledged publications still outstanding never came back.
    pub(super) fn finish(&mut self, epoch: &str, newest: u64) {
        if self.epoch.as_deref() == Some(epoch) {
            self.tally.missing += newest.saturating_sub(self.last);
        }
        self.tally.acked_lost += self.acked.len() as u64;
        self.acked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed_at(offset: u64) -> ChannelMemory {
        let mut m = ChannelMemory::default();
        m.subscribed("E".into(), offset, None);
        m
    }

    #[test]
    fn offsets_in_order_are_deliveries_and_the_rest_is_told_apart() {
        let mut m = subscribed_at(3);
        assert!(m.receive(4, false));
        assert!(m.receive(7, false), "a skip still moves on");
        assert!(!m.receive(7, false));
        assert!(!m.receive(5, false));
        let t = m.take_tally().unwrap();
        assert_eq!(
            (t.missing, t.duplicates, t.out_of_order),
            (2, 1, 1),
            "5 and 6 skipped, 7 twice, 5 late"
        );
        assert_eq!(m.take_tally(), None);
    }

    #[test]
    fn the_first_subscription_counts_what_was_published_before_the_user_joined() {
        let mut m = subscribed_at(3);
        assert_eq!(m.take_tally().unwrap().published_before_joining, 3);
        // A resubscription with `recover` owes everything after the last offset received.
        m.subscribed("E".into(), 9, Some(true));
        assert_eq!(m.take_tally().unwrap().published_before_joining, 0);
    }

    #[test]
    fn an_acknowledged_publication_must_come_back_from_its_publisher() {
        let mut m = subscribed_at(0);
        // Acknowledged before it arrives, and after.
        m.acknowledged("E".into(), 1, true);
        assert!(m.receive(1, true));
        assert!(m.receive(2, true));
        m.acknowledged("E".into(), 2, true);
        // Someone else's publication took an acknowledged offset: lost.
        m.acknowledged("E".into(), 3, true);
        assert!(m.receive(3, false));
        let t = m.take_tally().unwrap();
        assert_eq!((t.published, t.acked_lost), (3, 1));
    }

    #[test]
    fn recovered_false_excuses_what_the_broker_lost_and_counts_the_new_epoch() {
        let mut m = subscribed_at(0);
        assert!(m.receive(1, true));
        m.acknowledged("E".into(), 2, true);
        m.acknowledged("F".into(), 1, true);
        m.acknowledged("F".into(), 5, true);
        // The broker restarted empty: new epoch F, newest offset 4.
        m.subscribed("F".into(), 4, Some(false));
        let t = m.take_tally().unwrap();
        assert_eq!(
            (
                t.not_recovered,
                t.epoch_changes,
                t.acked_unrecovered,
                t.missing
            ),
            (1, 1, 2, 0)
        );
        // Acknowledged after the answer that covered it: excused as well.
        m.acknowledged("F".into(), 3, true);
        assert_eq!(m.take_tally().unwrap().acked_unrecovered, 1);
        // F:5 is still on its way; the final look finds it never came.
        m.finish("F", 5);
        let t = m.take_tally().unwrap();
        assert_eq!((t.missing, t.acked_lost), (1, 1));
    }

    #[test]
    fn recovered_true_keeps_the_position_and_the_recovered_publications_follow() {
        let mut m = subscribed_at(2);
        m.subscribed("E".into(), 5, Some(true));
        for k in 3..=5 {
            m.recovered_publication(k, false);
        }
        // One the recovery brought twice is a duplicate, not a second recovered publication.
        m.recovered_publication(5, false);
        assert_eq!(m.recover_from(), Some((5, "E")));
        let t = m.take_tally().unwrap();
        assert_eq!((t.recovered, t.missing, t.epoch_changes), (1, 0, 0));
        assert_eq!((t.recovered_publications, t.duplicates), (3, 1));
    }
}
