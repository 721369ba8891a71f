//! One established connection of a channel user (the `fanout` and `rooms` scenarios):
//! subscribes to its channel (with `recover` from the last offset it saw when it comes back
//! after a lost connection), publishes on an open-loop schedule until the publishing window
//! ends, and checks every publication against the offsets: in order and once counts as a
//! delivery with its latency, a skipped offset as missing, a repeated one as a duplicate. When
//! the run stops it, it unsubscribes and subscribes again with `recover`: the channel's newest
//! offset then tells how many publications it never received live (missing).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::channel_wire::{self, ChannelIncoming, Item};
use super::connect::Ws;
use super::session::{SessionEnd, close_code, ended};
use super::settings::UserContext;
use super::wire::{self, Incoming};
use crate::channels::{ChannelCounts, Role};
use crate::stats::bump;

/// What a channel user remembers from one connection to the next.
#[derive(Debug, Default)]
pub(super) struct ChannelMemory {
    /// The channel's epoch once subscribed, and the newest offset received.
    epoch: Option<String>,
    last: u64,
}

/// How long a closing user waits for the server's close frame.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

pub(super) struct ChannelSession<'a> {
    ctx: &'a UserContext,
    ws: Ws,
    role: &'a Role,
    memory: &'a mut ChannelMemory,
    /// The `subscribed` answer came: publications before it wait in `early`.
    subscribed: bool,
    early: Vec<Item>,
    next_id: u64,
    goodbye: Option<bool>,
}

impl<'a> ChannelSession<'a> {
    pub(super) fn new(
        ctx: &'a UserContext,
        ws: Ws,
        role: &'a Role,
        memory: &'a mut ChannelMemory,
    ) -> Self {
        ChannelSession {
            ctx,
            ws,
            role,
            memory,
            subscribed: false,
            early: Vec::new(),
            next_id: 1,
            goodbye: None,
        }
    }

    fn count(&self, f: impl FnOnce(&mut ChannelCounts)) {
        self.ctx.recorder.count(|c| f(&mut c.channels));
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
        loop {
            let due =
                next.filter(|&at| at < publish_until && (self.subscribed || !self.role.subscribes));
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    self.final_check().await;
                    self.close().await;
                    return SessionEnd::Stopped;
                }
                frame = self.ws.next() => {
                    if let Some(end) = self.on_frame(frame).await {
                        return end;
                    }
                    if let Some(reconnect) = self.goodbye {
                        self.close().await;
                        return SessionEnd::Goodbye { reconnect };
                    }
                }
                () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    next = next.zip(interval).map(|(at, i)| at + i);
                    if self.publish().await.is_err() {
                        return self.lost();
                    }
                }
            }
        }
    }

    async fn subscribe(&mut self) -> Result<(), WsError> {
        self.subscribed = false;
        let recover = self
            .memory
            .epoch
            .as_deref()
            .map(|epoch| (self.memory.last, epoch));
        let text = channel_wire::subscribe(&self.role.channel, recover);
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
            Some(ChannelIncoming::Publication(item)) if self.subscribed => self.receive(item),
            Some(ChannelIncoming::Publication(item)) => self.early.push(item),
            Some(ChannelIncoming::Subscribed {
                epoch,
                offset,
                recovered,
                publications,
            }) => {
                self.on_subscribed(epoch, offset, recovered, publications);
            }
            Some(ChannelIncoming::Published) => self.count(|c| c.published += 1),
            Some(ChannelIncoming::Unsubscribed { reason: Some(_) }) => {
                self.count(|c| c.insufficient_state += 1);
                return true;
            }
            Some(ChannelIncoming::Unsubscribed { reason: None }) => {}
            None => self.on_v1(text),
        }
        false
    }

    fn on_v1(&mut self, text: &str) {
        match wire::parse(text) {
            Some(Incoming::Chatter) => {}
            Some(Incoming::Error { id, code }) => {
                let refused = id.is_some();
                self.ctx.recorder.count(|c| {
                    c.channels.publish_refused += u64::from(refused);
                    bump(&mut c.server_errors, code);
                });
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
        match recovered {
            None => self.memory.last = offset,
            Some(true) => {
                self.count(|c| c.recovered += 1);
                // Received, but not live: no delivery latency for them.
                for item in publications {
                    self.step(item.offset);
                }
            }
            Some(false) => {
                self.count(|c| c.not_recovered += 1);
                if self.memory.epoch.as_deref() == Some(epoch.as_str()) {
                    let lost = offset.saturating_sub(self.memory.last);
                    self.count(|c| c.missing += lost);
                }
                self.memory.last = offset;
            }
        }
        self.memory.epoch = Some(epoch);
        self.subscribed = true;
        for item in std::mem::take(&mut self.early) {
            self.receive(item);
        }
    }

    /// A live publication: a delivery when it is the next offset.
    fn receive(&mut self, item: Item) {
        if self.step(item.offset) {
            match item.data {
                Some(stamp) => {
                    let micros = now_micros().saturating_sub(stamp.t);
                    self.ctx.recorder.delivered(Duration::from_micros(micros));
                }
                None => self.ctx.recorder.count(|c| c.protocol_errors += 1),
            }
        }
    }

    /// Moves the subscription to `offset`; false for an offset already seen (a duplicate).
    fn step(&mut self, offset: u64) -> bool {
        let last = self.memory.last;
        if offset <= last {
            self.count(|c| c.duplicates += 1);
            return false;
        }
        if offset > last + 1 {
            self.count(|c| c.missing += offset - last - 1);
        }
        self.memory.last = offset;
        true
    }

    /// The run ended: unsubscribe (still taking what arrives before the answer), subscribe
    /// again with `recover`, and count what the channel has beyond the last offset received
    /// live as missing.
    async fn final_check(&mut self) {
        if !self.role.subscribes || !self.subscribed {
            return;
        }
        let deadline = Instant::now() + self.ctx.drain_grace();
        let unsubscribe = channel_wire::unsubscribe(&self.role.channel);
        if self
            .ws
            .send(Message::Text(unsubscribe.into()))
            .await
            .is_err()
        {
            return;
        }
        let left =
            |m: &ChannelIncoming| matches!(m, ChannelIncoming::Unsubscribed { reason: None });
        if self.until(deadline, left).await.is_none() {
            return;
        }
        self.subscribed = false;
        let (last, Some(epoch)) = (self.memory.last, self.memory.epoch.clone()) else {
            return;
        };
        let check = channel_wire::subscribe(&self.role.channel, Some((last, &epoch)));
        if self.ws.send(Message::Text(check.into())).await.is_err() {
            return;
        }
        let answer = |m: &ChannelIncoming| matches!(m, ChannelIncoming::Subscribed { .. });
        if let Some(ChannelIncoming::Subscribed {
            epoch: now, offset, ..
        }) = self.until(deadline, answer).await
            && now == epoch
        {
            self.count(|c| c.missing += offset.saturating_sub(last));
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

    async fn close(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        let _ = timeout(CLOSE_REPLY_WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
