//! One virtual user: holds a connection to `/ws/chat/{id}`, sends `message`s on its
//! schedule, matches each `message_response` by `id`, and reconnects when the server asks.
//!
//! The parts, each in its own module:
//! - [`settings`]: what every user of a run does ([`Behaviour`]) and the shared context;
//! - [`reconnect`]: a user's life, connection after connection, with backoff;
//! - [`connect`]: TCP connect, upgrade and greeting, and how an attempt failed;
//! - [`session`]: one established connection, from the first send to the close handshake;
//! - [`schedule`]: when the next `message` is due (open or closed loop);
//! - [`in_flight`]: the `message`s sent and not yet answered;
//! - [`wire`]: the protocol v1 messages a user writes and reads;
//! - [`channels`], [`channel_memory`] and [`channel_wire`]: a channel scenario's connection
//!   (subscribe, publish, resubscribe), the accounting of what it receives against offsets
//!   and its own acknowledgements, and the v1.1 messages it writes and reads.

mod channel_memory;
mod channel_wire;
mod channels;
mod connect;
mod in_flight;
mod reconnect;
mod schedule;
mod session;
mod settings;
mod wire;

#[cfg(test)]
mod tests;

pub use reconnect::{backoff, run_user};
pub use settings::{Behaviour, UserContext};

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// Points `timer` at `at` when that is a new deadline. A session keeps its timers across the
/// turns of its loop: a `sleep_until` made on every turn is entered into the runtime's timer
/// wheel and taken out again each time, under the wheel's lock, while a kept timer whose
/// deadline stays, or moves later before it fired, does not touch the wheel.
fn aim(timer: Pin<&mut Sleep>, at: Option<Instant>) {
    if let Some(at) = at.filter(|&at| at != timer.deadline()) {
        timer.reset(at);
    }
}
