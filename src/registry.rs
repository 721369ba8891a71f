//! Admission and bookkeeping of open WebSockets: the hard cap (a semaphore permit reserved
//! before the upgrade and held for the whole life of the socket, because axum's limits stop
//! at the upgrade), the per-IP counts, the connection ids and who may replace whose
//! ([`may_replace`]), and the map of live connections behind `replaced` and the shutdown
//! drain. Every slot and claim is released by `Drop`, so no exit path can leak one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What another part of the server asks a connection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// Another connection took the same `connectionId`.
    Replaced = 1,
    /// The server is draining: say goodbye and close with 1001.
    Shutdown = 2,
}

/// The mailbox of one connection: a single pending command and the waker of the one task
/// that reads it. Much smaller than a channel (a channel allocates a block of slots per
/// connection), and checking it on every wake-up of the connection takes no lock.
#[derive(Debug, Default)]
pub struct Control {
    command: AtomicU8,
    waker: AtomicWaker,
}

impl Control {
    /// Delivers `command` unless an earlier one is pending (the first one wins).
    pub fn send(&self, command: Command) {
        if self
            .command
            .compare_exchange(0, command as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
        }
    }

    /// Waits for the command. Only one task may wait on a `Control`.
    pub async fn recv(&self) -> Command {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Command> {
        if let Some(command) = self.pending() {
            return Poll::Ready(command);
        }
        self.waker.register(cx.waker());
        // A command sent before the registration woke nobody: look again.
        self.pending().map_or(Poll::Pending, Poll::Ready)
    }

    fn pending(&self) -> Option<Command> {
        match self.command.load(Ordering::Acquire) {
            1 => Some(Command::Replaced),
            2 => Some(Command::Shutdown),
            _ => None,
        }
    }
}

/// Why an upgrade was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    AtCapacity,
    IpLimit,
    /// The connection id is open for someone who may not be replaced by this client.
    IdInUse,
}

/// Who opens a connection, as far as the server can tell: today the client's address (its
/// per-client key, after trusted-proxy resolution). Tokens (the channels issue) add a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub client: IpAddr,
}

/// Whether a connection opened by `newcomer` may replace the one `holder` holds under the
/// same id: only the same client (a reconnect whose old socket has not noticed it is dead
/// yet), never another one, which would otherwise evict anyone whose id it knows.
pub fn may_replace(holder: &Identity, newcomer: &Identity) -> bool {
    holder == newcomer
}

/// The connection an id belongs to.
struct Holder {
    serial: u64,
    identity: Identity,
    control: Arc<Control>,
}

#[derive(Default)]
struct Tables {
    per_ip: HashMap<IpAddr, u32>,
    live: HashMap<u64, Arc<Control>>,
    by_id: HashMap<Box<str>, Holder>,
}

/// All open WebSockets of this process.
pub struct Registry {
    permits: Arc<Semaphore>,
    max_per_ip: u32,
    next_serial: AtomicU64,
    tables: Mutex<Tables>,
}

/// A reserved slot (global permit, per-IP count and the connection id, if any), taken before
/// the upgrade.
pub struct Admission {
    registry: Arc<Registry>,
    ip: IpAddr,
    serial: u64,
    id: Option<Box<str>>,
    control: Arc<Control>,
    _permit: OwnedSemaphorePermit,
}

/// A live connection's entry; removing it on drop frees its slot.
pub struct Registration {
    admission: Admission,
}

impl Registry {
    /// `max_per_ip` 0 means no per-IP limit.
    pub fn new(max_connections: u32, max_per_ip: u32) -> Arc<Registry> {
        Arc::new(Registry {
            permits: Arc::new(Semaphore::new(max_connections as usize)),
            max_per_ip,
            next_serial: AtomicU64::new(1),
            tables: Mutex::new(Tables::default()),
        })
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated (each update is
        // a single insert or remove), so a poisoned lock is still consistent.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves a slot for `identity` (counted under its client key), claiming `id` if given,
    /// or says why not. The connection holding `id`, if [`may_replace`] allows, is told it was
    /// replaced; otherwise the id is in use and the holder is untouched.
    pub fn admit(
        self: &Arc<Self>,
        identity: Identity,
        id: Option<&str>,
    ) -> Result<Admission, AdmitError> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| AdmitError::AtCapacity)?;
        let mut tables = self.tables();
        if let Some(holder) = id.and_then(|id| tables.by_id.get(id))
            && !may_replace(&holder.identity, &identity)
        {
            return Err(AdmitError::IdInUse);
        }
        let ip = identity.client;
        let count = tables.per_ip.entry(ip).or_insert(0);
        // At the limit the count is at least 1, so the entry is never left at 0.
        if self.max_per_ip > 0 && *count >= self.max_per_ip {
            return Err(AdmitError::IpLimit);
        }
        *count += 1;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(Control::default());
        if let Some(id) = id {
            let holder = Holder {
                serial,
                identity,
                control: Arc::clone(&control),
            };
            // Replaced as soon as the same client is admitted again: its new connection is
            // the one it means to use (a command waits in the mailbox of one not yet running).
            if let Some(previous) = tables.by_id.insert(id.into(), holder) {
                previous.control.send(Command::Replaced);
            }
        }
        Ok(Admission {
            registry: Arc::clone(self),
            ip,
            serial,
            id: id.map(Into::into),
            control,
            _permit: permit,
        })
    }

    /// Records an upgraded connection as live.
    pub fn register(&self, admission: Admission) -> Registration {
        let control = Arc::clone(&admission.control);
        self.tables().live.insert(admission.serial, control);
        Registration { admission }
    }

    /// Number of open WebSockets.
    pub fn len(&self) -> usize {
        self.tables().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mailboxes of every open WebSocket, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Control>> {
        let tables = self.tables();
        let mut live: Vec<(u64, Arc<Control>)> = tables
            .live
            .iter()
            .map(|(s, c)| (*s, Arc::clone(c)))
            .collect();
        drop(tables);
        live.sort_unstable_by_key(|(serial, _)| *serial);
        live.into_iter().map(|(_, control)| control).collect()
    }

    /// Open WebSockets of one client IP.
    #[cfg(test)]
    fn count_for(&self, ip: IpAddr) -> u32 {
        self.tables().per_ip.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut tables = self.registry.tables();
        if let Some(count) = tables.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                tables.per_ip.remove(&self.ip);
            }
        }
        // A newer connection of the same client may hold the id by now: leave it.
        if let Some(id) = &self.id
            && tables.by_id.get(id).map(|holder| holder.serial) == Some(self.serial)
        {
            tables.by_id.remove(id);
        }
    }
}

impl Registration {
    pub fn control(&self) -> &Arc<Control> {
        &self.admission.control
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The admission, dropped next, releases the slot and the id.
        let mut tables = self.admission.registry.tables();
        tables.live.remove(&self.admission.serial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn who(client: IpAddr) -> Identity {
        Identity { client }
    }

    #[test]
    fn cap_and_per_ip_limit_release_on_drop() {
        let registry = Registry::new(3, 2);
        let a1 = registry.admit(who(A), None).unwrap();
        let _a2 = registry.admit(who(A), None).unwrap();
        assert_eq!(
            registry.admit(who(A), None).err(),
            Some(AdmitError::IpLimit)
        );
        let _b1 = registry.admit(who(B), None).unwrap();
        assert_eq!(
            registry.admit(who(B), None).err(),
            Some(AdmitError::AtCapacity)
        );
        drop(a1);
        assert_eq!(registry.count_for(A), 1);
        assert!(registry.admit(who(A), None).is_ok());
    }

    #[tokio::test]
    async fn same_id_from_the_same_client_replaces_the_older_connection() {
        let registry = Registry::new(10, 0);
        let open = |client| registry.register(registry.admit(who(client), Some("alice")).unwrap());
        let first = open(A);
        let second = open(A);
        assert_eq!(first.control().recv().await, Command::Replaced);
        assert_eq!(second.control().pending(), None);
        drop(first);
        // The older entry leaving must not unmap the newer one.
        let third = open(A);
        assert_eq!(second.control().recv().await, Command::Replaced);
        drop((second, third));
        assert!(registry.is_empty());
        assert_eq!(registry.count_for(A), 0);
        assert!(registry.tables().by_id.is_empty());
    }

    #[test]
    fn another_client_cannot_take_an_open_id() {
        let registry = Registry::new(10, 0);
        let held = registry.register(registry.admit(who(A), Some("alice")).unwrap());
        assert_eq!(
            registry.admit(who(B), Some("alice")).err(),
            Some(AdmitError::IdInUse)
        );
        assert_eq!(held.control().pending(), None, "the holder is untouched");
        assert_eq!(registry.count_for(B), 0);
        drop(held);
        assert!(registry.admit(who(B), Some("alice")).is_ok(), "free again");
    }

    #[test]
    fn an_upgrade_that_never_happened_gives_the_id_back() {
        let registry = Registry::new(10, 0);
        drop(registry.admit(who(A), Some("alice")).unwrap());
        assert!(registry.admit(who(B), Some("alice")).is_ok());
    }

    #[test]
    fn first_command_wins() {
        let control = Control::default();
        control.send(Command::Replaced);
        control.send(Command::Shutdown);
        assert_eq!(control.pending(), Some(Command::Replaced));
    }
}
