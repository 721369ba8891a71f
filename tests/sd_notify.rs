//! The systemd notify protocol, received on a real unix datagram socket given as
//! `NOTIFY_SOCKET`: `READY=1` only once the listener serves, `STATUS=` with the connection
//! count, `WATCHDOG=1` repeatedly at half of `WATCHDOG_USEC`, and `STOPPING=1` on SIGTERM, in
//! that order.

mod common;
mod launch;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use launch::{BIN, PATIENCE, Server, assert_clean_exit, chat, configure, is_listening};
use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

/// systemd's watchdog period for these tests, in microseconds: a ping every 100 ms.
const WATCHDOG_USEC: &str = "200000";

/// Every state line received on the notify socket, in order. A task reads the socket all the
/// time, as systemd does: the sender blocks once the socket's small queue is full.
struct Receiver {
    incoming: mpsc::UnboundedReceiver<String>,
    lines: Vec<String>,
}

impl Receiver {
    fn bind(path: &Path) -> Receiver {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        let (sender, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            while let Ok(len) = socket.recv(&mut buf).await {
                let datagram =
                    String::from_utf8(buf[..len].to_vec()).expect("notifications are text");
                if datagram
                    .lines()
                    .any(|line| sender.send(line.to_owned()).is_err())
                {
                    return;
                }
            }
        });
        Receiver {
            incoming,
            lines: Vec::new(),
        }
    }

    /// Receives until a line at index `from` or later satisfies `wanted`; returns its index.
    async fn until(&mut self, from: usize, what: &str, wanted: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.lines.iter().skip(from).position(|line| wanted(line)) {
                return from + at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.incoming.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no {what} within {PATIENCE:?}; received {:?}", self.lines)
                })
                .expect("the notify socket reader stopped");
            self.lines.push(line);
        }
    }

    /// Receives until `times` more lines after index `from` satisfy `wanted`; returns the
    /// index of the last.
    async fn until_times(
        &mut self,
        from: usize,
        times: usize,
        what: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> usize {
        let mut at = from;
        for _ in 0..times {
            at = self.until(at + 1, what, &wanted).await;
        }
        at
    }

    /// Takes in every line already received.
    fn take_queued(&mut self) {
        while let Ok(line) = self.incoming.try_recv() {
            self.lines.push(line);
        }
    }

    fn count(&self, line: &str) -> usize {
        self.lines.iter().filter(|l| *l == line).count()
    }
}

/// The server run through `sh -c 'WATCHDOG_PID=$$ exec server'`: the shell's pid becomes the
/// server's, so WATCHDOG_PID names the server itself, as systemd sets it.
fn with_own_watchdog_pid() -> (Command, launch::Addrs) {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", r#"WATCHDOG_PID=$$ exec "$0""#, BIN]);
    let addrs = configure(&mut command, "notify-test");
    (command, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_status_watchdog_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let mut receiver = Receiver::bind(&socket_path);
    let (mut command, addrs) = with_own_watchdog_pid();
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC);
    let mut server = Server::spawn(command);

    let ready = receiver.until(0, "READY=1", |l| l == "READY=1").await;
    assert!(
        is_listening(addrs.public),
        "READY=1 was sent before the listener accepts connections"
    );
    assert!(
        receiver.lines[..ready]
            .iter()
            .all(|l| l.starts_with("STATUS=")),
        "before READY: {:?}",
        receiver.lines
    );
    let status = receiver
        .until(ready, "STATUS= with READY=1", |l| l.starts_with("STATUS="))
        .await;
    assert_eq!(receiver.lines[status], "STATUS=0 connections, ready");
    let first_ping = receiver.until(0, "WATCHDOG=1", |l| l == "WATCHDOG=1").await;
    assert!(
        first_ping > ready,
        "WATCHDOG=1 before READY=1: {:?}",
        receiver.lines
    );

    // The periodic status follows the connection count.
    let (mut client, _) = chat(addrs.public, "notified-1").await;
    let counted = receiver
        .until(status + 1, "STATUS= counting the connection", |l| {
            l == "STATUS=1 connections, ready"
        })
        .await;
    // The pings go on while serving. Waited for, not counted at a moment: a busy machine may
    // send the status before a ping is due.
    receiver
        .until_times(counted, 2, "WATCHDOG=1 while serving", |l| {
            l == "WATCHDOG=1"
        })
        .await;

    server.signal(libc::SIGTERM);
    let stopping = receiver.until(0, "STOPPING=1", |l| l == "STOPPING=1").await;
    assert!(stopping > first_ping);
    assert_eq!(
        receiver.count("READY=1"),
        1,
        "READY=1 sent again: {:?}",
        receiver.lines
    );
    let (close, seen) = client.recv_until_close(PATIENCE).await;
    assert!(
        seen.iter()
            .any(|m| m["type"] == "goodbye" && m["reason"] == "server_shutdown"),
        "{seen:?}"
    );
    assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1001));
    assert_clean_exit(server.wait());
    receiver.take_queued();
    assert!(
        receiver.lines[stopping..]
            .iter()
            .all(|l| !l.starts_with("STATUS=") || l.ends_with("draining")),
        "a status after STOPPING=1 that is not draining: {:?}",
        receiver.lines
    );
}

/// A `WATCHDOG_PID` naming another process means the watchdog is not this server's: no
/// `WATCHDOG=1`, while the rest of the protocol goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_watchdog_pings_for_another_pid() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let mut receiver = Receiver::bind(&socket_path);
    let (mut command, _) = launch::server_command("notify-other-pid");
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env("WATCHDOG_PID", "1");
    let mut server = Server::spawn(command);

    let ready = receiver.until(0, "READY=1", |l| l == "READY=1").await;
    // Three statuses after READY=1 span at least one status period: many watchdog periods.
    receiver
        .until_times(ready, 3, "a periodic STATUS=", |l| l.starts_with("STATUS="))
        .await;
    assert_eq!(
        receiver.count("WATCHDOG=1"),
        0,
        "pinged a watchdog that is not ours: {:?}",
        receiver.lines
    );
    server.signal(libc::SIGTERM);
    receiver.until(0, "STOPPING=1", |l| l == "STOPPING=1").await;
    assert_clean_exit(server.wait());
}

/// `WATCHDOG_USEC` without `WATCHDOG_PID` (systemd allows it) enables the watchdog too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_without_watchdog_pid() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let mut receiver = Receiver::bind(&socket_path);
    let (mut command, _) = launch::server_command("notify-no-pid");
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC);
    let mut server = Server::spawn(command);

    let ready = receiver.until(0, "READY=1", |l| l == "READY=1").await;
    receiver
        .until(ready, "WATCHDOG=1", |l| l == "WATCHDOG=1")
        .await;
    assert_clean_exit(server.terminate());
}
