//! A real `redis-server` for the tests (Debian's package; `ci/setup` installs it): started on
//! a free loopback port with its own temporary directory, killed with the test. Shared by the
//! integration tests and, through `#[path]`, by the Redis engine's unit tests.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::skip::skip;

/// How long redis-server may take to accept connections.
const START_WAIT: Duration = Duration::from_secs(10);

/// One redis-server process of a test.
pub struct RedisServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Arguments after the port, bind and directory (persistence, limits).
    args: Vec<String>,
}

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

impl RedisServer {
    /// A running redis-server without persistence, or `None` after [`skip`] said why not.
    pub fn start_or_skip(test: &str) -> Option<RedisServer> {
        RedisServer::start_or_skip_with(test, &["--save", "", "--appendonly", "no"])
    }

    /// A running redis-server with these extra arguments, or `None` after [`skip`].
    pub fn start_or_skip_with(test: &str, args: &[&str]) -> Option<RedisServer> {
        let Some(binary) = find("redis-server") else {
            skip(
                test,
                "redis-server is not installed (apt-get install redis-server)",
            );
            return None;
        };
        let mut server = RedisServer {
            binary,
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.run();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again: the same port, directory and arguments, so the same
    /// append-only file when persistence is on) and waits until it accepts connections.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no", "--logfile", "redis.log"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen; its log:\n{}",
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Listening is not yet serving: wait for the data set to be loaded.
        while !self.cli(&["ping"]).contains("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL, as a crash would) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `redis-cli` against this server; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
