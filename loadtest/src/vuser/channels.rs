//! One established connection of a channel user (the `fanout` and `rooms` scenarios):
//! subscribes to its channel (with `recover` from the last offset it saw when it comes back
//! after a lost connection, after `insufficient_state`, or after leaving on purpose with
//! `--resubscribe-every`), tries again a moment later when a `subscribe` is refused
//! (`broker_unavailable`), publishes on an open-loop schedule until the publishing window
//! ends, and hands every answer and publication to its [`ChannelMemory`], which does the
//! accounting. On `goodbye` it publishes nothing more, closes its side and takes what the
//! server still sends before its close (the answers to publishes that crossed the goodbye). When the run stops it, it settles its subscription, unsubscribes and
//! subscribes again with `recover`: the channel's newest offset then tells how many
//! publications it never received live (missing).

use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::aim;
use super::channel_memory::ChannelMemory;
use super::channel_wire::{self, ChannelIncoming, Item, SUBSCRIBE_ID};
use super::connect::Ws;
use super::session::{SessionEnd, close_code, ended};
use super::settings::UserContext;
use super::wire::{self, Incoming};
use crate::channels::{ChannelCounts, Role};
use crate::stats::bump;

/// How long a closing user waits for the server's close frame.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

/// How long a user waits before it asks again for a refused subscription (jittered up to
/// twice as long, so that refused users do not come back together).
const SUBSCRIBE_RETRY: Duration = Duration::from_millis(250);

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Where the user's subscription stands on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// None (not subscribed yet, refused, or left on purpose).
    Idle,
    /// `subscribe` sent, no answer yet: publications wait in `early`.
    Requested,
    Live,
    /// `unsubscribe` sent: publications still count until its answer.
    Leaving,
}

pub(super) struct ChannelSession<'a> {
    ctx: &'a UserContext,
    ws: Ws,
    role: &'a Role,
    /// The user's connection id: publications `from` it are its own.
    me: &'a str,
    memory: &'a mut ChannelMemory,
    state: Subscription,
    early: Vec<Item>,
    /// When to subscribe again (after a refusal, or after leaving on purpose).
    subscribe_at: Option<Instant>,
    /// When to leave the channel on purpose next (`--resubscribe-every`).
    leave_at: Option<Instant>,
    next_id: u64,
    goodbye: Option<bool>,
}

impl<'a> ChannelSession<'a> {
    pub(super) fn new(
        ctx: &'a UserContext,
        ws: Ws,
        role: &'a Role,
        me: &'a str,
        memory: &'a mut ChannelMemory,
    ) -> Self {
        ChannelSession {
            ctx,
            ws,
            role,
            me,
            memory,
            state: Subscription::Idle,
            early: Vec::new(),
            subscribe_at: None,
            leave_at: None,
            next_id: 1,
            goodbye: None,
        }
    }

    fn count(&self, f: impl FnOnce(&mut ChannelCounts)) {
        self.ctx.recorder.count(|c| f(&mut c.channels));
    }

    /// Hands the memory's counts to the recorder.
    fn flush(&mut self) {
        if let Some(tally) = self.memory.take_tally() {
            self.count(|c| c.merge(&tally));
        }
    }

    fn resubscribe_every(&self) -> Option<Duration> {
        self.ctx
            .behaviour
            .channels
            .as_ref()
            .and_then(|p| p.resubscribe_every_ms)
            .map(Duration::from_millis)
    }

    pub(super) async fn run(
        mut self,
        stop: &CancellationToken,
        (publish_from, publish_until): (Instant, Instant),
    ) -> SessionEnd {
        if self.role.subscribes && self.subscribe().await.is_err() {
            return SessionEnd::Lost;
        }
        let interval = (self.role.publish_rate > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.role.publish_rate));
        // A random phase spreads the publishes of users that connected together.
        let mut next =
            interval.map(|i| Instant::now().max(publish_from) + i.mul_f64(fastrand::f64()));
        // Made once, not on every turn (see `aim`); the rare resubscription timers are not.
        let mut stopped = pin!(stop.cancelled());
        let mut publish_timer = pin!(sleep_until(Instant::now()));
        loop {
            // A subscriber publishes once it has been subscribed (then also while it is
            // away from its channel: that is what recovery must make up for).
            let ready = !self.role.subscribes || self.memory.recover_from().is_some();
            let due = next.filter(|&at| at < publish_until && ready);
            aim(publish_timer.as_mut(), due);
            let (subscribe_at, leave_at) = (self.subscribe_at, self.leave_at);
            tokio::select! {
                biased;
                () = &mut stopped => {
                    self.final_check().await;
                    self.flush();
                    self.close().await;
                    return SessionEnd::Stopped;
                }
                frame = self.ws.next() => {
                    let end = self.on_frame(frame).await;
                    self.flush();
                    if let Some(end) = end {
                        return end;
                    }
                    if let Some(reconnect) = self.goodbye {
                        self.leave_after_goodbye().await;
                        self.flush();
                        return SessionEnd::Goodbye { reconnect };
                    }
                }
                () = &mut publish_timer, if due.is_some() => {
                    next = next.zip(interval).map(|(at, i)| at + i);
                    if self.publish().await.is_err() {
                        return self.lost();
                    }
                }
                () = sleep_until(subscribe_at.unwrap_or_else(Instant::now)), if subscribe_at.is_some() => {
                    self.subscribe_at = None;
                    if self.state == Subscription::Idle && self.subscribe().await.is_err() {
                        return self.lost();
                    }
                }
                () = sleep_until(leave_at.unwrap_or_else(Instant::now)), if leave_at.is_some() => {
                    self.leave_at = None;
                    if self.state == Subscription::Live && self.unsubscribe().await.is_err() {
                        return self.lost();
                    }
                }
            }
        }
    }

    async fn subscribe(&mut self) -> Result<(), WsError> {
        self.state = Subscription::Requested;
        let text = channel_wire::subscribe(&self.role.channel, self.memory.recover_from());
        self.ws.send(Message::Text(text.into())).await
    }

    async fn unsubscribe(&mut self) -> Result<(), WsError> {
        self.state = Subscription::Leaving;
        let text = channel_wire::unsubscribe(&self.role.channel);
        self.ws.send(Message::Text(text.into())).await
    }

    async fn publish(&mut self) -> Result<(), WsError> {
        let text = channel_wire::publish(
            &self.role.channel,
            self.next_id,
            now_micros(),
            &self.ctx.payload,
        );
        self.next_id += 1;
        self.count(|c| c.publishes += 1);
        self.ws.send(Message::Text(text.into())).await
    }

    /// Handles what the server sent; `Some` when the connection is over.
    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) -> Option<SessionEnd> {
        match frame {
            Some(Ok(Message::Text(text))) => {
                if self.on_text(&text) && self.subscribe().await.is_err() {
                    return Some(self.lost());
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let code = close_code(frame.as_ref());
                self.ctx.recorder.count(|c| bump(&mut c.close_codes, &code));
                return Some(ended(self.goodbye));
            }
            Some(Ok(Message::Binary(_))) => self.ctx.recorder.count(|c| c.protocol_errors += 1),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Some(self.lost()),
        }
        None
    }

    /// Handles one text message; true when the subscription must be made again (the server
    /// ended it with `insufficient_state`).
    fn on_text(&mut self, text: &str) -> bool {
        match channel_wire::parse(text) {
            Some(ChannelIncoming::Publication(item)) => match self.state {
                Subscription::Live | Subscription::Leaving => self.receive(item),
                Subscription::Requested => self.early.push(item),
                // The server ended the subscription: nothing may follow on it.
                Subscription::Idle => self.ctx.recorder.count(|c| c.protocol_errors += 1),
            },
            Some(ChannelIncoming::Subscribed {
                epoch,
                offset,
                recovered,
                publications,
            }) => self.on_subscribed(epoch, offset, recovered, publications),
            Some(ChannelIncoming::Published { offset, epoch }) => {
                self.memory
                    .acknowledged(epoch, offset, self.role.subscribes);
            }
            Some(ChannelIncoming::Unsubscribed { reason: Some(_) }) => {
                self.count(|c| c.insufficient_state += 1);
                self.state = Subscription::Idle;
                return true;
            }
            Some(ChannelIncoming::Unsubscribed { reason: None }) => self.on_left(),
            None => self.on_v1(text),
        }
        false
    }

    /// Our `unsubscribe` was answered: stay away for up to half the resubscription period.
    fn on_left(&mut self) {
        self.state = Subscription::Idle;
        if let Some(every) = self.resubscribe_every() {
            self.subscribe_at = Some(Instant::now() + every.mul_f64(fastrand::f64() / 2.0));
        }
    }

    fn on_v1(&mut self, text: &str) {
        match wire::parse(text) {
            Some(Incoming::Chatter) => {}
            Some(Incoming::Error { id, code }) => {
                let subscribe = id == Some(SUBSCRIBE_ID);
                let publish = id.is_some() && !subscribe;
                self.ctx.recorder.count(|c| {
                    c.channels.subscribe_refused += u64::from(subscribe);
                    c.channels.publish_refused += u64::from(publish);
                    bump(&mut c.server_errors, code);
                });
                if subscribe {
                    self.state = Subscription::Idle;
                    self.subscribe_at =
                        Some(Instant::now() + SUBSCRIBE_RETRY.mul_f64(1.0 + fastrand::f64()));
                }
            }
            Some(Incoming::Goodbye { reason, reconnect }) => {
                self.goodbye = Some(reconnect);
                self.ctx
                    .recorder
                    .count(|c| bump(&mut c.goodbye_reasons, reason));
            }
            _ => self.ctx.recorder.count(|c| c.protocol_errors += 1),
        }
    }

    fn on_subscribed(
        &mut self,
        epoch: String,
        offset: u64,
        recovered: Option<bool>,
        publications: Vec<Item>,
    ) {
        if self.state != Subscription::Requested {
            self.ctx.recorder.count(|c| c.protocol_errors += 1);
            return;
        }
        self.memory.subscribed(epoch, offset, recovered);
        // Received, but not live: no delivery latency for them.
        for item in publications {
            let own = self.is_own(&item);
            self.memory.recovered_publication(item.offset, own);
        }
        self.state = Subscription::Live;
        for item in std::mem::take(&mut self.early) {
            self.receive(item);
        }
        self.leave_at = self
            .resubscribe_every()
            .map(|every| Instant::now() + every.mul_f64(0.5 + fastrand::f64()));
    }

    fn is_own(&self, item: &Item) -> bool {
        item.from.as_deref() == Some(self.me)
    }

    /// A live publication: a delivery when it is the next offset.
    fn receive(&mut self, item: Item) {
        let own = self.is_own(&item);
        if self.memory.receive(item.offset, own) {
            match item.data {
                Some(stamp) => {
                    let micros = now_micros().saturating_sub(stamp.t);
                    self.ctx.recorder.delivered(Duration::from_micros(micros));
                }
                None => self.ctx.recorder.count(|c| c.protocol_errors += 1),
            }
        }
    }

    /// The run ended: settle a request in flight, unsubscribe (still taking what arrives
    /// before the answer), subscribe again with `recover`, and count what the channel has
    /// beyond the last offset received as missing.
    async fn final_check(&mut self) {
        if !self.role.subscribes {
            return;
        }
        let deadline = Instant::now() + self.ctx.drain_grace();
        loop {
            match self.state {
                Subscription::Live => {
                    if self.unsubscribe().await.is_err() {
                        return;
                    }
                }
                Subscription::Requested | Subscription::Leaving => {
                    let Ok(Some(Ok(frame))) = timeout_at(deadline, self.ws.next()).await else {
                        return;
                    };
                    if let Message::Text(text) = frame {
                        // An `insufficient_state` now only ends the subscription.
                        self.on_text(&text);
                    }
                }
                Subscription::Idle => break,
            }
        }
        let Some((last, epoch)) = self
            .memory
            .recover_from()
            .map(|(last, epoch)| (last, epoch.to_owned()))
        else {
            return;
        };
        let check = channel_wire::subscribe(&self.role.channel, Some((last, &epoch)));
        self.state = Subscription::Requested;
        if self.ws.send(Message::Text(check.into())).await.is_err() {
            return;
        }
        let answer = |m: &ChannelIncoming| matches!(m, ChannelIncoming::Subscribed { .. });
        if let Some(ChannelIncoming::Subscribed { epoch, offset, .. }) =
            self.until(deadline, answer).await
        {
            self.memory.finish(&epoch, offset);
        }
    }

    /// Handles frames until one matches `done` and returns it; `None` when none came by
    /// `deadline`.
    async fn until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&ChannelIncoming) -> bool,
    ) -> Option<ChannelIncoming> {
        loop {
            let frame = match timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(frame))) => frame,
                _ => return None,
            };
            let Message::Text(text) = frame else { continue };
            match channel_wire::parse(&text) {
                Some(message) if done(&message) => return Some(message),
                _ => {
                    self.on_text(&text);
                }
            }
        }
    }

    fn lost(&self) -> SessionEnd {
        self.ctx
            .recorder
            .count(|c| bump(&mut c.close_codes, "none"));
        ended(self.goodbye)
    }

    async fn send_close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = self.ws.close(Some(frame)).await;
    }

    async fn close(&mut self) {
        self.send_close().await;
        let _ = timeout(CLOSE_REPLY_WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// The server said `goodbye`: publish nothing more, close our side, and take what the
    /// server sends until its close. It answers every request that came before our close
    /// (docs/protocol.md, the grace of `server_shutdown`), so the `published` answers to
    /// publishes that crossed the goodbye count as acknowledged, and publications still
    /// arriving count too (the next connection recovers from the last one taken). Nothing
    /// is subscribed again here: that is the next connection's first request.
    async fn leave_after_goodbye(&mut self) {
        self.send_close().await;
        let _ = timeout(CLOSE_REPLY_WAIT, async {
            while let Some(Ok(frame)) = self.ws.next().await {
                if let Message::Text(text) = frame {
                    self.on_text(&text);
                }
            }
        })
        .await;
    }
}
