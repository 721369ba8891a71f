//! The pub/sub task's position checks: every `REDIS_POSITION_CHECK_INTERVAL`, each channel's
//! top in Redis against what was handed on, which finds what pub/sub dropped silently, Redis
//! going back, and repairs that failed. The reads run in a task of their own while the pub/sub
//! task goes on serving: a check of a thousand channels is several round trips of scripts on
//! a Redis that is busy with publishes, and pub/sub held up meanwhile added those milliseconds
//! to the latency of every publication in flight, every interval. So a read is judged against
//! what the channel had handed on when the check began, not against what arrived while it read.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::super::super::broker::{BrokerError, History};
use super::super::shared::Shared;
use super::{Task, Tracker};

/// Position reads in flight at once during a check.
const CHECK_BATCH: usize = 256;

/// A channel as a check began with it.
struct Mark {
    name: Arc<str>,
    epoch: Arc<str>,
    /// The last offset handed on when the check began: Redis assigned it before the read.
    delivered: u64,
}

/// A channel's position as a check read it.
pub(super) struct Checked {
    mark: Mark,
    position: Result<History, BrokerError>,
}

/// A check under way, aborted when dropped. A task of its own, not a future the pub/sub task
/// polls beside its other work: the reads wait in the commands connection's queue (a bounded
/// channel, served in order), and a read granted its place there but not polled while the
/// pub/sub task awaited a subscribe's read held that read up until it timed out.
pub(super) struct Check(JoinHandle<Vec<Checked>>);

impl Drop for Check {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Task {
    /// The end of the check under way (`check` is `Some`).
    pub(super) async fn finish_check(check: &mut Option<Check>) -> Vec<Checked> {
        let Some(Check(task)) = check else {
            return std::future::pending().await;
        };
        // Aborted only when dropped: an error here is its panic, passed on.
        task.await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// Starts a check of every channel subscribed here: the commands connection's ping, then
    /// the positions.
    pub(super) fn begin_check(&self) -> Check {
        let shared = Arc::clone(&self.shared);
        let marks = self.marks();
        Check(tokio::spawn(async move {
            shared.probe().await;
            read(&shared, marks).await
        }))
    }

    /// A check run to its end before pub/sub is served: on a new connection, where whatever
    /// was published while none listened is in the history, or lost.
    pub(super) async fn check_after_loss(&mut self) {
        let checked = read(&self.shared, self.marks()).await;
        self.judge(checked, true).await;
    }

    /// Repairs every channel that `checked` shows lost. A channel unsubscribed meanwhile is
    /// left alone, and so is one a repair moved to another epoch: that repair read later.
    pub(super) async fn judge(&mut self, checked: Vec<Checked>, after_loss: bool) {
        for Checked { mark, position } in checked {
            let Some(tracker) = self.channels.get_mut(&mark.name) else {
                continue;
            };
            if tracker.epoch != mark.epoch {
                continue;
            }
            let lost = match position {
                Ok(position) => tracker.lost(mark.delivered, &position, after_loss),
                Err(_) => {
                    tracker.unrepaired |= after_loss;
                    false
                }
            };
            if lost {
                self.repair(&mark.name).await;
            }
        }
    }

    fn marks(&self) -> Vec<Mark> {
        self.channels
            .values()
            .map(|tracker| Mark {
                name: Arc::clone(&tracker.name),
                epoch: Arc::clone(&tracker.epoch),
                delivered: tracker.delivered,
            })
            .collect()
    }
}

/// The positions of the channels of `marks`, [`CHECK_BATCH`] reads at a time.
async fn read(shared: &Shared, marks: Vec<Mark>) -> Vec<Checked> {
    let names: Vec<Arc<str>> = marks.iter().map(|mark| Arc::clone(&mark.name)).collect();
    let mut positions = Vec::with_capacity(names.len());
    for batch in names.chunks(CHECK_BATCH) {
        positions.extend(shared.positions(batch).await);
    }
    marks
        .into_iter()
        .zip(positions)
        .map(|(mark, position)| Checked { mark, position })
        .collect()
}

impl Tracker {
    /// Whether a check's read of Redis's `position`, begun when `began` was the last offset
    /// handed on, shows the channel lost: a top still ahead of what was handed on one check
    /// later (pub/sub dropped it silently), a top behind `began` (Redis went back: the
    /// repair's read tells the history script, which gives the channel a new epoch), another
    /// epoch, or a repair that failed. `after_loss`: pub/sub was down, so a top ahead now is
    /// lost already.
    fn lost(&mut self, began: u64, position: &History, after_loss: bool) -> bool {
        let ahead = position.top > self.delivered;
        let same_epoch = *position.epoch == *self.epoch;
        // Offsets handed on while the read was under way can be newer than the top it saw;
        // only those handed on before it began prove that Redis went back.
        let behind = same_epoch && position.top < began;
        let lost = self.unrepaired
            || behind
            || !same_epoch
            || (after_loss && ahead)
            || self.seen_ahead.is_some_and(|top| top > self.delivered);
        self.seen_ahead = ahead.then_some(position.top);
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(delivered: u64) -> Tracker {
        Tracker {
            name: "c".into(),
            subscribers: 1,
            epoch: "e".into(),
            delivered,
            live: delivered,
            went_back: false,
            seen_ahead: None,
            unrepaired: false,
        }
    }

    fn position(epoch: &str, top: u64) -> History {
        History {
            epoch: epoch.into(),
            top,
            publications: Vec::new(),
            complete: false,
        }
    }

    #[test]
    fn offsets_handed_on_during_the_read_are_not_redis_going_back() {
        // 5 handed on when the check began, 6 and 7 while it read; Redis's top was 6 then.
        let mut channel = tracker(7);
        assert!(!channel.lost(5, &position("e", 6), false));
        assert_eq!(channel.seen_ahead, None);
    }

    #[test]
    fn a_top_below_what_was_handed_on_before_the_read_is_redis_going_back() {
        let mut channel = tracker(7);
        assert!(channel.lost(5, &position("e", 4), false));
    }

    #[test]
    fn a_top_ahead_is_lost_only_when_still_ahead_one_check_later() {
        let mut channel = tracker(5);
        assert!(
            !channel.lost(5, &position("e", 6), false),
            "6 may be on its way"
        );
        assert_eq!(channel.seen_ahead, Some(6));
        channel.delivered = 6;
        assert!(!channel.lost(6, &position("e", 8), false), "6 arrived");
        assert!(channel.lost(6, &position("e", 8), false), "7 never came");
    }

    #[test]
    fn after_a_loss_a_top_ahead_is_lost_at_once() {
        assert!(tracker(5).lost(5, &position("e", 6), true));
        assert!(!tracker(5).lost(5, &position("e", 5), true));
    }

    #[test]
    fn another_epoch_or_a_failed_repair_is_lost() {
        assert!(tracker(5).lost(5, &position("f", 5), false));
        let mut unrepaired = tracker(5);
        unrepaired.unrepaired = true;
        assert!(unrepaired.lost(5, &position("e", 5), false));
    }
}
