//! The channels' state as a handover carries it to the next process (docs/handover.md): per
//! channel its epoch, newest offset, when it last published, and its history, so that the next
//! process goes on with the same epochs and offsets and fills its subscribers' gaps from the
//! same history. Only an engine that keeps channels in the process (`BROKER=memory`) has any.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Every channel of the process.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelsSnapshot {
    pub channels: Vec<ChannelSnapshot>,
}

/// One channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSnapshot {
    pub name: String,
    pub epoch: String,
    /// The newest offset (0 when nothing was published in this epoch).
    pub top: u64,
    /// Since its last publication (`HISTORY_TTL` counts from it), if it had one. A duration:
    /// the two processes share no monotonic clock.
    pub published_ms_ago: Option<u64>,
    /// Its history, oldest first, ending at `top`.
    pub history: Vec<PublicationSnapshot>,
}

/// One publication of a history.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicationSnapshot {
    pub offset: u64,
    pub data: Box<RawValue>,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What a take-over restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub channels: usize,
    pub publications: usize,
    /// Channels not restored: already created here, over `MAX_CHANNELS`, or inconsistent.
    pub refused: usize,
}
