//! The handover's state (docs/handover.md, "The state"): one memfd, written whole, then
//! sealed. A version line, one JSON document, and a completion marker naming the document's
//! length: a reader takes it only sealed, of a version it knows, and complete.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;

use rustix::fs::{MemfdFlags, SealFlags, fcntl_add_seals, fcntl_get_seals, memfd_create};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::channels::ChannelsSnapshot;

const MAGIC: &str = "concurrent-socket-handover";
/// Raised whenever a record or the document changes shape: an older binary then refuses the
/// state instead of guessing at it.
/// 2: the records carry subscriptions and identities, the document the channels.
pub const VERSION: u32 = 2;

/// What the old process leaves for the new one.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    /// When the old process was told to hand over (Unix ms): the new process times the
    /// handover from it.
    pub signalled_at_ms: u64,
    /// The sessions' records, in the order of the sockets in the queue.
    pub connections: Vec<Box<RawValue>>,
    /// The channels, when the broker keeps them in the process (`BROKER=memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelsSnapshot>,
}

/// Why a state is not taken.
#[derive(Debug)]
pub enum Unreadable {
    /// Not sealed against writing: the writer did not finish.
    NotSealed,
    Io(io::Error),
    NotAState,
    Version(String),
    /// The completion marker is missing or names another length: cut short.
    Incomplete,
    Json(serde_json::Error),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::NotSealed => f.write_str("not sealed: its writer did not finish"),
            Unreadable::Io(e) => write!(f, "cannot read it: {e}"),
            Unreadable::NotAState => f.write_str("not a handover state"),
            Unreadable::Version(v) => write!(f, "version {v}, this build reads {VERSION}"),
            Unreadable::Incomplete => f.write_str("no completion marker: cut short"),
            Unreadable::Json(e) => write!(f, "not understood: {e}"),
        }
    }
}

impl From<io::Error> for Unreadable {
    fn from(e: io::Error) -> Self {
        Unreadable::Io(e)
    }
}

/// The bytes of `state`: version line, document, completion marker.
pub fn encode(state: &State) -> Vec<u8> {
    let document = serde_json::to_vec(state).expect("a state serialises");
    let mut bytes = format!("{MAGIC} {VERSION}\n").into_bytes();
    bytes.extend_from_slice(&document);
    bytes.extend_from_slice(format!("\nend {}\n", document.len()).as_bytes());
    bytes
}

/// The state in `bytes`, if whole and of this version.
pub fn decode(bytes: &[u8]) -> Result<State, Unreadable> {
    let line_end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(Unreadable::NotAState)?;
    let first = std::str::from_utf8(&bytes[..line_end]).map_err(|_| Unreadable::NotAState)?;
    let version = first
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(Unreadable::NotAState)?;
    if version != VERSION.to_string() {
        return Err(Unreadable::Version(version.to_owned()));
    }
    let rest = &bytes[line_end + 1..];
    let marker_start = rest
        .windows(5)
        .rposition(|w| w == b"\nend ")
        .ok_or(Unreadable::Incomplete)?;
    let document = &rest[..marker_start];
    if &rest[marker_start..] != format!("\nend {}\n", document.len()).as_bytes() {
        return Err(Unreadable::Incomplete);
    }
    serde_json::from_slice(document).map_err(Unreadable::Json)
}

/// A sealed memfd holding `state`.
pub fn write(state: &State) -> io::Result<OwnedFd> {
    let fd = memfd_create(
        "handover-state",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = File::from(fd);
    file.write_all(&encode(state))?;
    let seals = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    fcntl_add_seals(&file, seals)?;
    Ok(file.into())
}

/// The state in the memfd `fd`, if sealed, whole and of this version.
pub fn read(fd: OwnedFd) -> Result<State, Unreadable> {
    let seals = fcntl_get_seals(&fd).map_err(io::Error::from)?;
    if !seals.contains(SealFlags::WRITE) {
        return Err(Unreadable::NotSealed);
    }
    let mut file = File::from(fd);
    // The writer's offset travels with the descriptor: read from the start.
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            signalled_at_ms: 1_765_000_000_000,
            connections: vec![RawValue::from_string(r#"{"id":"a"}"#.into()).unwrap()],
            channels: Some(ChannelsSnapshot::default()),
        }
    }

    #[test]
    fn a_sealed_state_reads_back() {
        let fd = write(&state()).unwrap();
        let back = read(fd).unwrap();
        assert_eq!(back.signalled_at_ms, 1_765_000_000_000);
        assert_eq!(back.connections[0].get(), r#"{"id":"a"}"#);
        assert!(back.channels.is_some_and(|c| c.channels.is_empty()));
    }

    #[test]
    fn an_unsealed_memfd_is_refused() {
        let fd = memfd_create("x", MemfdFlags::ALLOW_SEALING).unwrap();
        let mut file = File::from(fd);
        file.write_all(&encode(&state())).unwrap();
        assert!(matches!(read(file.into()), Err(Unreadable::NotSealed)));
    }

    #[test]
    fn cut_short_foreign_or_newer_states_are_refused() {
        let bytes = encode(&state());
        for cut in [bytes.len() - 1, bytes.len() - 8, bytes.len() / 2, 30] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let text = String::from_utf8(bytes.clone()).unwrap();
        let this = format!(" {VERSION}\n");
        for other in [VERSION + 1, VERSION - 1] {
            let other = other.to_string();
            let state = text.replacen(&this, &format!(" {other}\n"), 1);
            assert!(matches!(decode(state.as_bytes()), Err(Unreadable::Version(v)) if v == other));
        }
        assert!(matches!(decode(b"hello\n"), Err(Unreadable::NotAState)));
        assert!(decode(&bytes).is_ok());
    }
}
