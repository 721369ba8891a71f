//! Admission and bookkeeping of open WebSockets: the hard cap (a semaphore permit reserved
//! before the upgrade and held for the whole life of the socket, because axum's limits stop
//! at the upgrade), the per-IP counts, the connection ids and who may replace whose
//! ([`may_replace`]), and the map of live connections behind `replaced` and the shutdown
//! drain. Every slot and id is released by `Drop`, so no exit path can leak one.

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
    /// The server hands its connections to the next process: park between two frames.
    Handover = 3,
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
            3 => Some(Command::Handover),
            _ => None,
        }
    }
}

/// Who a connection id belongs to. A connection replaces an older one with the same id only
/// when [`may_replace`] says so; otherwise the newcomer is refused (`connection_id_in_use`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Authentication is off: the client, by its per-client key (its address after
    /// trusted-proxy resolution, IPv6 grouped by `CLIENT_IPV6_PREFIX`).
    Client(IpAddr),
    /// The verified user (the token's `sub`).
    User(Arc<str>),
}

/// Whether a connection of `newcomer` may replace one of `holder` with the same id: only the
/// same client without tokens (a reconnect whose old socket has not noticed it is dead yet),
/// only the same user with tokens; never anyone else, who would otherwise evict whoever's id
/// it knows.
pub fn may_replace(holder: &Owner, newcomer: &Owner) -> bool {
    holder == newcomer
}

/// The id is held by a connection that the newcomer may not replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdInUse;

/// Why an upgrade was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    AtCapacity,
    IpLimit,
}

#[derive(Default)]
struct Tables {
    per_ip: HashMap<IpAddr, u32>,
    live: HashMap<u64, Arc<Control>>,
    by_id: HashMap<Box<str>, (u64, Owner)>,
}

/// All open WebSockets of this process.
pub struct Registry {
    permits: Arc<Semaphore>,
    capacity: usize,
    max_per_ip: u32,
    next_serial: AtomicU64,
    tables: Mutex<Tables>,
}

/// A reserved slot (global permit and per-IP count), taken before the upgrade.
pub struct Admission {
    /// The client's per-client key.
    registry: Arc<Registry>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

/// A live connection's entry; removing it on drop frees its slot.
pub struct Registration {
    admission: Admission,
    serial: u64,
    id: Option<Box<str>>,
    control: Arc<Control>,
}

impl Registry {
    /// `max_per_ip` 0 means no per-IP limit.
    pub fn new(max_connections: u32, max_per_ip: u32) -> Arc<Registry> {
        Arc::new(Registry {
            permits: Arc::new(Semaphore::new(max_connections as usize)),
            capacity: max_connections as usize,
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

    /// Reserves a slot for a client of per-client key `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, AdmitError> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| AdmitError::AtCapacity)?;
        let mut tables = self.tables();
        let count = tables.per_ip.entry(ip).or_insert(0);
        // At the limit the count is at least 1, so the entry is never left at 0.
        if self.max_per_ip > 0 && *count >= self.max_per_ip {
            return Err(AdmitError::IpLimit);
        }
        *count += 1;
        Ok(Admission {
            registry: Arc::clone(self),
            ip,
            _permit: permit,
        })
    }

    /// Records an upgraded connection, with no id yet ([`Registration::claim`] gives it one).
    pub fn register(&self, admission: Admission) -> Registration {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let control = Arc::new(Control::default());
        self.tables().live.insert(serial, Arc::clone(&control));
        Registration {
            admission,
            serial,
            id: None,
            control,
        }
    }

    /// Whether a connection of `owner` asking for `id` now would be refused: checked before
    /// the upgrade, so that the refusal can be an HTTP answer.
    pub fn id_in_use(&self, id: &str, owner: &Owner) -> bool {
        self.tables()
            .by_id
            .get(id)
            .is_some_and(|(_, holder)| !may_replace(holder, owner))
    }

    /// Number of open WebSockets.
    pub fn len(&self) -> usize {
        self.tables().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots reserved: every open WebSocket, and every upgrade answered whose session has not
    /// registered yet.
    pub fn admitted(&self) -> usize {
        self.capacity - self.permits.available_permits()
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
    }
}

impl Registration {
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// The per-client key the connection was admitted under.
    pub fn client(&self) -> IpAddr {
        self.admission.ip
    }

    /// Takes `id` for this connection, on behalf of `owner`: the previous holder, if it may be
    /// replaced, is told so; if it may not, the id stays its own and this connection has none.
    pub fn claim(&mut self, id: &str, owner: Owner) -> Result<(), IdInUse> {
        let mut tables = self.admission.registry.tables();
        if let Some((previous, holder)) = tables.by_id.get(id) {
            if !may_replace(holder, &owner) {
                return Err(IdInUse);
            }
            if let Some(old) = tables.live.get(previous) {
                old.send(Command::Replaced);
            }
        }
        tables.by_id.insert(id.into(), (self.serial, owner));
        drop(tables);
        self.id = Some(id.into());
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut tables = self.admission.registry.tables();
        tables.live.remove(&self.serial);
        if let Some(id) = &self.id
            && tables.by_id.get(id).map(|(serial, _)| *serial) == Some(self.serial)
        {
            tables.by_id.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn cap_and_per_ip_limit_release_on_drop() {
        let registry = Registry::new(3, 2);
        let a1 = registry.admit(A).unwrap();
        let _a2 = registry.admit(A).unwrap();
        assert_eq!(registry.admit(A).err(), Some(AdmitError::IpLimit));
        let _b1 = registry.admit(B).unwrap();
        assert_eq!(registry.admit(B).err(), Some(AdmitError::AtCapacity));
        drop(a1);
        assert_eq!(registry.count_for(A), 1);
        assert!(registry.admit(A).is_ok());
    }

    #[test]
    fn admitted_counts_slots_reserved_before_and_after_registering() {
        let registry = Registry::new(3, 0);
        let reserved = registry.admit(A).unwrap();
        assert_eq!((registry.admitted(), registry.len()), (1, 0));
        let registered = registry.register(reserved);
        assert_eq!((registry.admitted(), registry.len()), (1, 1));
        drop(registered);
        assert_eq!((registry.admitted(), registry.len()), (0, 0));
    }

    fn claimed(registry: &Arc<Registry>, id: &str, owner: Owner) -> Registration {
        let mut registration = registry.register(registry.admit(A).unwrap());
        registration.claim(id, owner).unwrap();
        registration
    }

    #[tokio::test]
    async fn same_id_from_the_same_client_replaces_the_older_connection() {
        let registry = Registry::new(10, 0);
        let first = claimed(&registry, "alice", Owner::Client(A));
        let second = claimed(&registry, "alice", Owner::Client(A));
        assert_eq!(first.control().recv().await, Command::Replaced);
        assert_eq!(second.control().pending(), None);
        drop(first);
        // The older entry leaving must not unmap the newer one.
        let third = claimed(&registry, "alice", Owner::Client(A));
        assert_eq!(second.control().recv().await, Command::Replaced);
        drop((second, third));
        assert!(registry.is_empty());
        assert_eq!(registry.count_for(A), 0);
        assert!(registry.tables().by_id.is_empty());
    }

    #[test]
    fn another_client_cannot_take_an_open_id() {
        let registry = Registry::new(10, 0);
        let held = claimed(&registry, "alice", Owner::Client(A));
        assert!(registry.id_in_use("alice", &Owner::Client(B)));
        let mut intruder = registry.register(registry.admit(B).unwrap());
        assert_eq!(intruder.claim("alice", Owner::Client(B)), Err(IdInUse));
        assert_eq!(held.control().pending(), None, "the holder is untouched");
        drop((held, intruder));
        assert!(
            !registry.id_in_use("alice", &Owner::Client(B)),
            "free again"
        );
    }

    #[tokio::test]
    async fn only_the_same_user_replaces() {
        let registry = Registry::new(10, 0);
        let (alice, bob) = (Owner::User("alice".into()), Owner::User("bob".into()));
        let first = claimed(&registry, "phone", alice.clone());
        assert!(registry.id_in_use("phone", &bob));
        assert!(!registry.id_in_use("phone", &alice));
        let mut intruder = registry.register(registry.admit(B).unwrap());
        assert_eq!(intruder.claim("phone", bob.clone()), Err(IdInUse));
        assert_eq!(
            first.control().pending(),
            None,
            "bob never closes alice's connection"
        );
        drop(intruder);
        assert!(
            registry.id_in_use("phone", &bob),
            "the refused claim unmapped nothing"
        );
        let second = claimed(&registry, "phone", alice);
        assert_eq!(first.control().recv().await, Command::Replaced);
        drop((first, second));
        assert!(!registry.id_in_use("phone", &bob));
    }

    #[test]
    fn first_command_wins() {
        let control = Control::default();
        control.send(Command::Replaced);
        control.send(Command::Shutdown);
        assert_eq!(control.pending(), Some(Command::Replaced));
    }
}
