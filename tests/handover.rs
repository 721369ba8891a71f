//! The handover between two real server processes (docs/handover.md), with this test in
//! systemd's place: it holds the listening socket, receives the old process's notifications
//! on a `NOTIFY_SOCKET` with the descriptors they carry (`FDSTORE=1`, `BARRIER=1`), and starts
//! the next process with the stored descriptors after the socket, named in `LISTEN_FDNAMES`.
//! A chat connection goes on over the same TCP connection: a message sent while no process
//! reads is answered by the new one, in order, with no goodbye and no close frame.

mod common;
mod launch;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use launch::{PATIENCE, Server, chat, listening_socket, pass_fds, server_command, wait_for_200};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use serde_json::json;

/// What the old process sent on the notify socket: every line, and the stored descriptors
/// by name.
struct Store {
    lines: Vec<String>,
    stored: Vec<(String, OwnedFd)>,
}

/// Reads notifications until `BARRIER=1` (answered by closing its pipe, as systemd does).
fn receive_until_barrier(socket: &UnixDatagram) -> Store {
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut store = Store {
        lines: Vec::new(),
        stored: Vec::new(),
    };
    loop {
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .expect("a notification before the timeout");
        let text = String::from_utf8(buf[..received.bytes].to_vec()).unwrap();
        let fds: Vec<OwnedFd> = control
            .drain()
            .flat_map(|message| match message {
                RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
                _ => Vec::new(),
            })
            .collect();
        store.lines.extend(text.lines().map(str::to_owned));
        if text.contains("BARRIER=1") {
            return store; // dropping the pipe's end answers the barrier
        }
        if text.contains("FDSTORE=1") {
            let name = text
                .lines()
                .find_map(|line| line.strip_prefix("FDNAME="))
                .expect("FDNAME with FDSTORE")
                .to_owned();
            store
                .stored
                .extend(fds.into_iter().map(|fd| (name.clone(), fd)));
        }
    }
}

fn notify_socket(dir: &Path, name: &str) -> (UnixDatagram, String) {
    let path = dir.join(name);
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    (socket, path.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_connection_goes_on_over_the_same_socket_in_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let listener = listening_socket();
    let addr = listener.local_addr().unwrap();
    let start = |server_id: &str, fds: &[i32], names: &str, notify: &str| {
        let (mut command, _) = server_command(server_id);
        command.env("NOTIFY_SOCKET", notify).env("FDSTORE", "16");
        pass_fds(&mut command, fds, Some(names));
        Server::spawn(command)
    };

    let (old_notify, old_path) = notify_socket(dir.path(), "old-notify");
    let mut old = start("old", &[listener.as_raw_fd()], "ws", &old_path);
    wait_for_200(addr, "/health").await;
    let (mut client, welcome) = chat(addr, "kept").await;
    assert_eq!(welcome["serverId"], "old");
    client
        .send_json(&json!({"type": "message", "id": "1", "data": "before"}))
        .await;
    assert_eq!(client.recv_reply().await["id"], "1");

    old.signal(libc::SIGUSR2);
    let store = tokio::task::spawn_blocking(move || receive_until_barrier(&old_notify))
        .await
        .unwrap();
    // Sent while the connection is parked: the next process answers it.
    client
        .send_json(&json!({"type": "message", "id": "2", "data": "during"}))
        .await;
    let status = old.wait();
    assert_eq!(status.code(), Some(75), "exit status after a handover");
    let names: Vec<&str> = store.stored.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["handover-conns", "handover-state"],
        "{:?}",
        store.lines
    );

    let (new_notify, new_path) = notify_socket(dir.path(), "new-notify");
    let fds = [
        listener.as_raw_fd(),
        store.stored[0].1.as_raw_fd(),
        store.stored[1].1.as_raw_fd(),
    ];
    let mut new = start("new", &fds, "ws:handover-conns:handover-state", &new_path);
    drop(store); // the new process holds its own copies
    let answer = tokio::time::timeout(PATIENCE, client.recv_reply())
        .await
        .expect("the message sent during the handover is answered");
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("message_response"), Some("2")),
        "{answer}"
    );
    client
        .send_json(&json!({"type": "message", "id": "3", "data": "after"}))
        .await;
    assert_eq!(client.recv_reply().await["id"], "3");
    let (_, health) = launch::get(addr, "/health").await.unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["serverId"], "new");
    assert_eq!(health["connections"], 1, "{health}");

    // The new process emptied the store of both entries.
    new_notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut removed = Vec::new();
    let mut buf = [0u8; 4096];
    while removed.len() < 2 {
        let len = new_notify
            .recv(&mut buf)
            .expect("FDSTOREREMOVE for both entries");
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if text.contains("FDSTOREREMOVE=1") {
            removed.push(text);
        }
    }
    assert!(
        removed[0].contains("FDNAME=handover-conns")
            && removed[1].contains("FDNAME=handover-state")
    );
    drop(client);
    launch::assert_clean_exit(new.terminate());
}

/// SIGUSR2 without a file descriptor store (no `FDSTORE`): refused, the server serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_sigusr2_is_refused_and_nothing_changes() {
    let (mut command, addrs) = server_command("lonely");
    command.env_remove("FDSTORE");
    let mut server = Server::spawn(command);
    wait_for_200(addrs.public, "/health").await;
    let (mut client, _) = chat(addrs.public, "stays").await;
    server.signal(libc::SIGUSR2);
    client
        .send_json(&json!({"type": "message", "id": "1", "data": "still here"}))
        .await;
    assert_eq!(client.recv_reply().await["id"], "1");
    let deadline = std::time::Instant::now() + PATIENCE;
    while !server.log_text().contains("cannot hand over") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    launch::assert_clean_exit(server.terminate());
}
