//! Sessions: what runs on an upgraded WebSocket until it ends. The chat session speaks
//! protocol v1; the echo session sends every frame back (conformance suites).

pub(crate) mod chat;
pub(crate) mod echo;
mod ending;
mod identity;
mod subscriptions;
