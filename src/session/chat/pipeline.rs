//! What a chat connection owes between reading requests and answering them, so that its
//! publishes are pipelined: the session reads on while the broker works, up to
//! [`MAX_OWED`] answers owed (publishes in flight or done, and the answers of the requests
//! read behind them), then stops reading until the oldest is answered (backpressure: no queue
//! grows without bound). Answers leave in request order: one that is ready early waits for
//! those before it; a subscribe or unsubscribe read meanwhile, and the reply to the client's
//! close frame, wait until every answer before them is out. Allocated on the first channel
//! request and freed once nothing is owed: an idle connection pays one empty pointer.
//! docs/protocol.md, "Channels", says what clients see.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio_tungstenite::tungstenite::Message;

use super::super::subscriptions::{ChannelRequest, PublishRequest, Reply};
use super::{Ending, Session, slow};
use crate::protocol::{ServerMessage, now_ms};

/// Answers one connection may owe before it stops reading: publishes in flight at once, at
/// most. 32 keeps a saturated publisher far from the Redis round trip's bound (32 per round
/// trip) while what it can make the server hold stays small (32 requests of at most
/// `MAX_MESSAGE_BYTES`).
pub(super) const MAX_OWED: usize = 32;

/// What a connection owes, oldest first.
#[derive(Default)]
pub(super) struct Work {
    owed: VecDeque<Owed>,
    /// The number of `owed`'s oldest entry: entries are numbered in request order, so that a
    /// publish that ends finds its place.
    front: u64,
    /// The publishes in flight. Only those whose broker call woke the session are polled:
    /// polling every one of up to [`MAX_OWED`] on each wake-up made a saturated Redis path
    /// spend up to twice the CPU per delivery (docs/benchmarks.md).
    running: FuturesUnordered<Numbered>,
    /// A subscribe or unsubscribe read: served once nothing before it is owed.
    waiting: Option<(ChannelRequest, Instant)>,
    /// The reply to the client's close frame: queued once nothing before it is owed.
    close: Option<Message>,
}

/// One answer owed to a request read at `received`; `None` while its publish runs.
struct Owed {
    reply: Option<Reply>,
    received: Instant,
}

/// A publish in flight with the number of its place in [`Work::owed`].
struct Numbered {
    number: u64,
    publish: BoxFuture<'static, Reply>,
}

impl Future for Numbered {
    type Output = (u64, Reply);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let number = self.number;
        self.publish.as_mut().poll(cx).map(|reply| (number, reply))
    }
}

impl Work {
    /// Polls the publishes in flight that were woken. A publish reaches the broker on its
    /// first poll, and new ones are first polled in the order they were pushed, so the broker
    /// gets them in request order (the Redis engine writes them to its connection in that
    /// order); each is one broker call that is never retried.
    fn poll_running(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some((number, reply))) = self.running.poll_next_unpin(cx) {
            let place = usize::try_from(number - self.front).expect("an owed place fits memory");
            self.owed[place].reply = Some(reply);
        }
    }

    fn front_is_done(&self) -> bool {
        self.owed.front().is_some_and(|owed| owed.reply.is_some())
    }

    /// The oldest answer owed, when it is done.
    fn pop_done(&mut self) -> Option<(Reply, Instant)> {
        if !self.front_is_done() {
            return None;
        }
        let Owed { reply, received } = self.owed.pop_front()?;
        self.front += 1;
        Some((reply?, received))
    }

    fn push(&mut self, reply: Option<Reply>, received: Instant) {
        self.owed.push_back(Owed { reply, received });
    }

    fn start(&mut self, publish: BoxFuture<'static, Reply>, received: Instant) {
        let number = self.front + self.owed.len() as u64;
        self.running.push(Numbered { number, publish });
        self.push(None, received);
    }
}

/// Ready when the oldest answer owed is done (and meanwhile drives the publishes in
/// flight); never while nothing is owed.
pub(super) fn answer_ready(mut work: Option<&mut Work>) -> impl Future<Output = ()> + Send {
    poll_fn(move |cx| match work.as_deref_mut() {
        Some(work) if !work.owed.is_empty() => {
            work.poll_running(cx);
            if work.front_is_done() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
        _ => Poll::Pending,
    })
}

impl Session {
    /// Whether the session reads the socket: not while it owes [`MAX_OWED`] answers, nor
    /// while a request or the reply to the client's close waits for the answers before it.
    pub(super) fn reads(&self) -> bool {
        self.work.as_deref().is_none_or(|work| {
            work.owed.len() < MAX_OWED && work.waiting.is_none() && work.close.is_none()
        })
    }

    fn owes(&self) -> bool {
        self.work
            .as_deref()
            .is_some_and(|work| !work.owed.is_empty())
    }

    fn work(&mut self) -> &mut Work {
        self.work.get_or_insert_with(Box::default)
    }

    /// Answers a request read at `received`: at once, or after the answers owed before it.
    pub(super) fn answer(&mut self, reply: Reply, received: Instant) -> Result<(), Ending> {
        if self.owes() {
            self.work().push(Some(reply), received);
            return Ok(());
        }
        self.write_answer(reply, received)
    }

    /// Queues an answer in the outbox (an `error` counted by its code).
    fn write_answer(&mut self, reply: Reply, received: Instant) -> Result<(), Ending> {
        match reply {
            Ok((json, kind)) => self.queue(json, kind, Some(received)).map_err(slow),
            Err(error) => {
                self.state.metrics.error(error.code);
                let message = ServerMessage::error(&error, now_ms());
                self.send(&message, Some(received)).map_err(slow)
            }
        }
    }

    /// A publish read at `received`: it reaches the broker at the next [`Session::settle`].
    pub(super) fn start_publish(&mut self, request: PublishRequest, received: Instant) {
        let state = Arc::clone(&self.state);
        let publish = request.serve(state, self.credentials.identity(), &self.id);
        self.work().start(publish, received);
    }

    /// A subscribe or unsubscribe read at `received`: served by [`Session::settle`] once
    /// nothing before it is owed; the session reads nothing more meanwhile.
    pub(super) fn hold(&mut self, request: ChannelRequest, received: Instant) {
        self.work().waiting = Some((request, received));
    }

    /// The client's close frame was read: when answers are still owed, the transport's reply
    /// to it is held back until they are queued (no answer may follow a close frame).
    pub(super) fn hold_close(&mut self) {
        if self.owes() {
            if let Some(close) = self.outbox.take_close() {
                self.work().close = Some(close);
            }
        }
    }

    /// After a read, or once the oldest answer owed is done: starts the publishes just read
    /// (in request order), queues the answers that are done, oldest first, up to the first
    /// still running; once nothing is owed, serves the request that waited and queues the
    /// held close reply, and frees what the connection owed.
    pub(super) async fn settle(&mut self) -> Result<(), Ending> {
        if let Some(work) = self.work.as_deref_mut() {
            poll_fn(|cx| {
                work.poll_running(cx);
                Poll::Ready(())
            })
            .await;
        }
        while let Some((reply, received)) = self.work.as_deref_mut().and_then(Work::pop_done) {
            self.write_answer(reply, received)?;
        }
        if self.owes() {
            return Ok(());
        }
        let Some(work) = self.work.take() else {
            return Ok(());
        };
        let Work { waiting, close, .. } = *work;
        if let Some(request) = waiting {
            self.on_channel_request(request).await?;
        }
        if let Some(close) = close {
            self.outbox.push_last(close);
        }
        Ok(())
    }

    /// Waits for every answer owed and queues them in order, without reading: before a
    /// `goodbye`, or before the connection is handed over. Bounded: each broker call ends
    /// within the broker's own timeout (`REDIS_TIMEOUT`; the in-memory engine's at once).
    pub(super) async fn answer_all(&mut self) -> Result<(), Ending> {
        while self.work.is_some() {
            if self.owes() {
                answer_ready(self.work.as_deref_mut()).await;
            }
            self.settle().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::task::Waker;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;
    use crate::protocol::ServerType;

    /// Publishes whose polls are recorded (by number, in order) and which end when their
    /// sender fires.
    #[derive(Default)]
    struct Publishes {
        polls: Arc<Mutex<Vec<usize>>>,
        ends: Vec<Option<oneshot::Sender<()>>>,
    }

    impl Publishes {
        fn start(&mut self, work: &mut Work, received: Instant) {
            let (end, mut ended) = oneshot::channel::<()>();
            let (number, polls) = (self.ends.len(), Arc::clone(&self.polls));
            self.ends.push(Some(end));
            let publish = Box::pin(poll_fn(move |cx| {
                polls.lock().unwrap().push(number);
                let reply: Reply = Ok((number.to_string(), ServerType::Published));
                Pin::new(&mut ended).poll(cx).map(|_| reply)
            }));
            work.start(publish, received);
        }

        fn end(&mut self, number: usize) {
            let end = self.ends[number].take().expect("each publish ends once");
            end.send(()).unwrap();
        }

        fn polls(&self) -> Vec<usize> {
            self.polls.lock().unwrap().clone()
        }
    }

    fn poll_running(work: &mut Work) {
        work.poll_running(&mut Context::from_waker(Waker::noop()));
    }

    fn popped(work: &mut Work) -> Vec<String> {
        std::iter::from_fn(|| work.pop_done())
            .map(|(reply, _)| reply.unwrap().0)
            .collect()
    }

    #[test]
    fn a_publish_that_ends_is_the_only_one_polled_again() {
        let (mut work, mut publishes) = (Work::default(), Publishes::default());
        for _ in 0..MAX_OWED {
            publishes.start(&mut work, Instant::now());
        }
        poll_running(&mut work);
        for number in (0..MAX_OWED).rev() {
            publishes.end(number);
            poll_running(&mut work);
        }
        let polls = publishes.polls();
        let (first, again) = polls.split_at(MAX_OWED);
        assert_eq!(
            first,
            (0..MAX_OWED).collect::<Vec<_>>(),
            "first polls in request order"
        );
        assert_eq!(
            again,
            (0..MAX_OWED).rev().collect::<Vec<_>>(),
            "one poll per ending"
        );
    }

    #[test]
    fn answers_leave_in_request_order_whatever_order_publishes_end_in() {
        let (mut work, mut publishes) = (Work::default(), Publishes::default());
        let start = Instant::now();
        publishes.start(&mut work, start);
        work.push(Some(Ok(("done".into(), ServerType::Subscribed))), start);
        publishes.start(&mut work, start + Duration::from_millis(1));
        publishes.start(&mut work, start + Duration::from_millis(2));
        poll_running(&mut work);

        publishes.end(2);
        poll_running(&mut work);
        assert!(
            popped(&mut work).is_empty(),
            "nothing leaves before the oldest"
        );
        publishes.end(0);
        poll_running(&mut work);
        assert_eq!(popped(&mut work), ["0", "done"]);
        publishes.start(&mut work, start + Duration::from_millis(3));
        publishes.end(1);
        poll_running(&mut work);
        assert_eq!(popped(&mut work), ["1", "2"]);
        publishes.end(3);
        poll_running(&mut work);
        assert_eq!(popped(&mut work), ["3"]);
        assert!(work.owed.is_empty() && work.running.is_empty());
    }
}
