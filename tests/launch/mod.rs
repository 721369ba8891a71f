//! Starting the real server binary the way systemd does, for the socket activation, sd_notify
//! and journald tests: any command line (a wrapper shell, `unshare`), listening sockets placed
//! on fds 3, 4, ... with `LISTEN_FDS`, a child stopped with SIGTERM (or killed when a test
//! fails) whose log is shown when a test fails, and HTTP probes by address. The WebSocket
//! client and free ports come from the shared harness (tests/common).
#![allow(dead_code)] // each test binary uses its own part of this module

use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Client, free_port};

pub const BIN: &str = env!("CARGO_BIN_EXE_concurrent-socket");
/// How long the server gets to start or to stop before the test gives up (a bound against a
/// hung test, not a performance assertion).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// What systemd sets and the test process might itself have inherited.
const SYSTEMD_VARS: [&str; 7] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
];
/// Passed sockets are first moved to fds from here, clear of the target numbers 3, 4, ...
const SCRATCH_FD: RawFd = 64;
const MAX_PASSED_FDS: usize = 8;

/// The addresses a server was told to bind (`PORT`, `METRICS_ADDR`).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub public: SocketAddr,
    pub metrics: SocketAddr,
}

/// A listening loopback socket on a port of the kernel's choosing.
pub fn listening_socket() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Sets the server's environment on `command` (free loopback ports, no inherited systemd
/// variables) and returns the addresses it will bind unless given sockets.
pub fn configure(command: &mut Command, server_id: &str) -> Addrs {
    for var in SYSTEMD_VARS {
        command.env_remove(var);
    }
    let addrs = Addrs {
        public: SocketAddr::from(([127, 0, 0, 1], free_port())),
        metrics: SocketAddr::from(([127, 0, 0, 1], free_port())),
    };
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", addrs.public.port().to_string())
        .env("METRICS_ADDR", addrs.metrics.to_string())
        .env("SERVER_ID", server_id)
        .env("LOG_LEVEL", "info")
        .env("SHUTDOWN_TIMEOUT", "3000");
    addrs
}

/// The server binary with `configure`d environment.
pub fn server_command(server_id: &str) -> (Command, Addrs) {
    let mut command = Command::new(BIN);
    let addrs = configure(&mut command, server_id);
    (command, addrs)
}

/// Passes `sockets` as fds 3, 4, ... with `LISTEN_FDS` (and `LISTEN_FDNAMES` when named), as
/// systemd does; no `LISTEN_PID`, which listenfd does not require.
pub fn pass_sockets(command: &mut Command, sockets: &[&TcpListener], names: Option<&str>) {
    let fds: Vec<RawFd> = sockets.iter().map(|socket| socket.as_raw_fd()).collect();
    pass_fds(command, &fds, names);
}

/// Passes any descriptors as `pass_sockets` does (the fd store's entries come this way).
pub fn pass_fds(command: &mut Command, passed: &[RawFd], names: Option<&str>) {
    assert!(passed.len() <= MAX_PASSED_FDS);
    let mut fds = [-1; MAX_PASSED_FDS];
    fds[..passed.len()].copy_from_slice(passed);
    let count = passed.len();
    command.env("LISTEN_FDS", count.to_string());
    if let Some(names) = names {
        command.env("LISTEN_FDNAMES", names);
    }
    // SAFETY: the closure only calls fcntl and dup2, which are async-signal-safe, and
    // allocates nothing.
    unsafe { command.pre_exec(move || place_fds(&fds[..count])) };
}

/// Between fork and exec: moves each socket out of the way (a source may already sit on a
/// target number), then onto 3, 4, ... where dup2 leaves close-on-exec cleared.
fn place_fds(fds: &[RawFd]) -> io::Result<()> {
    let mut scratch = [-1; MAX_PASSED_FDS];
    for (moved, &fd) in scratch.iter_mut().zip(fds) {
        // SAFETY: plain fcntl on a descriptor this process owns.
        *moved = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, SCRATCH_FD) })?;
    }
    for (target, &moved) in (3..).zip(&scratch[..fds.len()]) {
        // SAFETY: plain dup2 onto a descriptor number the child reserves for systemd sockets.
        check(unsafe { libc::dup2(moved, target) })?;
    }
    Ok(())
}

fn check(ret: libc::c_int) -> io::Result<RawFd> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A running server. Dropping it kills the process; a failing test shows its log.
pub struct Server {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `command` with its stdout and stderr in a log file.
    pub fn spawn(mut command: Command) -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join("server.log");
        let out = File::create(&log).expect("the log file");
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup the log file"))
            .stderr(out);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Server {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        assert_eq!(
            unsafe { libc::kill(self.pid() as libc::pid_t, signal) },
            0,
            "kill({signal})"
        );
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// Waits for the server to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not exit within {PATIENCE:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        let mut text = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log ---\n{}--- end of server log ---",
                self.log_text()
            );
        }
    }
}

/// A clean exit: status 0, not killed by a signal.
pub fn assert_clean_exit(status: ExitStatus) {
    assert!(
        status.success(),
        "the server exited with {status:?} (signal {:?})",
        status.signal()
    );
}

/// GET `path`: the status and body.
pub async fn get(addr: SocketAddr, path: &str) -> reqwest::Result<(u16, String)> {
    let response = reqwest::get(format!("http://{addr}{path}")).await?;
    Ok((response.status().as_u16(), response.text().await?))
}

/// Waits until GET `path` answers 200 (the server is up), returning the body.
pub async fn wait_for_200(addr: SocketAddr, path: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match get(addr, path).await {
            Ok((200, body)) => return body,
            outcome if Instant::now() > deadline => {
                panic!("GET {path} on {addr} never answered 200: {outcome:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Whether anything accepts TCP connections on `addr`.
pub fn is_listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Connects to `/ws/chat/{id}` on `addr` and reads `connection_established`.
pub async fn chat(addr: SocketAddr, id: &str) -> (Client, Value) {
    let url = format!("ws://{addr}/ws/chat/{id}");
    let mut client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    let welcome = client.recv_json().await;
    assert_eq!(welcome["type"], "connection_established", "{welcome}");
    (client, welcome)
}
