//! The handover between two real server processes (docs/handover.md), with this test in
//! systemd's place: it holds the listening socket, receives the old process's notifications
//! on a `NOTIFY_SOCKET` with the descriptors they carry (`FDSTORE=1`, `BARRIER=1`), and starts
//! the next process with the stored descriptors after the socket, named in `LISTEN_FDNAMES`.
//! A chat connection goes on over the same TCP connection: a message sent while no process
//! reads is answered by the new one, in order, with no goodbye and no close frame. Channel
//! subscribers get every publication once, in order, in the same epoch, while a publisher
//! publishes all along; an authenticated connection keeps its identity and its expiry.

mod common;
mod launch;

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use common::Client;
use common::chat::{ask, offsets, publications, publish, subscribe};
use common::redis_server::RedisServer;
use futures_util::{SinkExt, StreamExt};
use launch::{PATIENCE, Server, chat, listening_socket, pass_fds, server_command, wait_for_200};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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

/// This test in systemd's place for one unit: its listening socket, and the environment of
/// every process it starts.
struct Unit {
    dir: tempfile::TempDir,
    listener: TcpListener,
    env: Vec<(String, String)>,
}

impl Unit {
    fn new(env: &[(&str, &str)]) -> Unit {
        Unit {
            dir: tempfile::tempdir().unwrap(),
            listener: listening_socket(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// Starts a process with the socket and what the previous one stored, if any; returns it
    /// with its notify socket.
    fn start(&self, server_id: &str, store: Option<&Store>) -> (Server, UnixDatagram) {
        let (notify, path) = notify_socket(self.dir.path(), &format!("{server_id}-notify"));
        let (mut command, _) = server_command(server_id);
        command.env("NOTIFY_SOCKET", path).env("FDSTORE", "16");
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut fds = vec![self.listener.as_raw_fd()];
        let mut names = String::from("ws");
        for (name, fd) in store.map_or(&[][..], |store| &store.stored[..]) {
            fds.push(fd.as_raw_fd());
            names.push_str(&format!(":{name}"));
        }
        pass_fds(&mut command, &fds, Some(&names));
        (Server::spawn(command), notify)
    }
}

/// `SIGUSR2` to `old`: what it left in the store, once it exited with status 75.
async fn hand_over(old: &mut Server, notify: UnixDatagram) -> Store {
    old.signal(libc::SIGUSR2);
    let store = tokio::task::spawn_blocking(move || receive_until_barrier(&notify))
        .await
        .unwrap();
    let status = old.wait();
    assert_eq!(status.code(), Some(75), "exit status after a handover");
    let names: Vec<&str> = store.stored.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["handover-conns", "handover-state"],
        "{:?}",
        store.lines
    );
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_connection_goes_on_over_the_same_socket_in_the_next_process() {
    let unit = Unit::new(&[]);
    let addr = unit.addr();
    let (mut old, old_notify) = unit.start("old", None);
    wait_for_200(addr, "/health").await;
    let (mut client, welcome) = chat(addr, "kept").await;
    assert_eq!(welcome["serverId"], "old");
    client
        .send_json(&json!({"type": "message", "id": "1", "data": "before"}))
        .await;
    assert_eq!(client.recv_reply().await["id"], "1");

    let store = hand_over(&mut old, old_notify).await;
    // Sent while no process reads: the next process answers it.
    client
        .send_json(&json!({"type": "message", "id": "2", "data": "during"}))
        .await;
    let (mut new, new_notify) = unit.start("new", Some(&store));
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

/// A connection the old process accepted before the handover but whose upgrade request comes
/// only while the others park (after it stopped accepting) is answered before HTTP stops, not
/// closed unanswered: it is upgraded, parks with the others, and goes on in the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_the_handover_gets_its_answer() {
    let unit = Unit::new(&[]);
    let addr = unit.addr();
    let (mut old, notify) = unit.start("old", None);
    wait_for_200(addr, "/health").await;
    let (_kept, _) = chat(addr, "kept").await;
    let late = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_for_200(addr, "/health").await; // the old process accepts in order: `late` is in

    old.signal(libc::SIGUSR2);
    let stored = tokio::task::spawn_blocking(move || receive_until_barrier(&notify));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = tokio_tungstenite::MaybeTlsStream::Plain(late);
    let (ws, response) = tokio_tungstenite::client_async(format!("ws://{addr}/ws/chat/late"), late)
        .await
        .expect("the upgrade is answered");
    let mut late = Client { ws };
    assert_eq!(response.status(), 101);
    let store = stored.await.unwrap();
    assert_eq!(old.wait().code(), Some(75), "{:?}", store.lines);
    let (mut new, _new_notify) = unit.start("new", Some(&store));
    drop(store);

    let welcome = late.recv_json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["serverId"].as_str()),
        (Some("connection_established"), Some("old")),
        "{welcome}"
    );
    let ping = json!({"type": "message", "id": "after", "data": "still here"});
    late.send_json(&ping).await;
    let answer = tokio::time::timeout(PATIENCE, late.recv_reply())
        .await
        .expect("answered by the new process");
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("message_response"), Some("after")),
        "handed over, not told to leave: {answer}"
    );
    let (_, health) = launch::get(addr, "/health").await.unwrap();
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        (health["serverId"].as_str(), health["connections"].as_u64()),
        (Some("new"), Some(2)),
        "{health}"
    );
    drop(late);
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

/// What the publisher is told: publish this many at once, or stop.
enum Publish {
    Burst(usize),
    Stop,
}

/// Publishes to `channel` every few milliseconds, without waiting for the answers, and a
/// burst when told, until told to stop; then reads the answers of all it sent. Returns each
/// `published` answer, in order.
async fn publish_continuously(
    mut publisher: Client,
    channel: &'static str,
    mut orders: tokio::sync::mpsc::UnboundedReceiver<Publish>,
) -> Vec<Value> {
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    let (mut sent, mut answers, mut stopped) = (0u64, Vec::new(), false);
    let publish = |n: u64| {
        Message::text(
            json!({"type": "publish", "channel": channel, "id": n.to_string(), "data": n})
                .to_string(),
        )
    };
    while !stopped || (answers.len() as u64) < sent {
        let count = tokio::select! {
            _ = ticks.tick(), if !stopped => 1,
            order = orders.recv(), if !stopped => match order {
                Some(Publish::Burst(n)) => n,
                Some(Publish::Stop) | None => { stopped = true; 0 }
            },
            frame = tokio::time::timeout(PATIENCE, publisher.ws.next()) => {
                let text = match frame.expect("an answer within the patience") {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    other => panic!("the publisher's connection ended: {other:?}"),
                };
                let answer: Value = serde_json::from_str(&text).unwrap();
                if answer["type"] != "heartbeat" {
                    assert_eq!(answer["type"], "published", "{answer}");
                    answers.push(answer);
                }
                0
            }
        };
        for _ in 0..count {
            sent += 1;
            publisher
                .ws
                .send(publish(sent))
                .await
                .expect("send a publish");
        }
    }
    answers
}

/// BROKER=memory: the channels travel in the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_every_publication_once_in_order_across_a_handover() {
    every_publication_once_in_order(Unit::new(&[])).await;
}

/// BROKER=redis: the history is Redis's; the resumed subscriptions fill their gap from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_subscribers_fill_the_gap_from_its_history() {
    let test = "with_redis_subscribers_fill_the_gap_from_its_history";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    every_publication_once_in_order(Unit::new(&[
        ("BROKER", "redis"),
        ("REDIS_URL", &redis.url()),
    ]))
    .await;
}

/// BROKER=redis, and the channel lost its state in Redis while no process ran (a new epoch):
/// the resumed subscription cannot be filled and ends with `insufficient_state`, never a
/// silent gap; the client recovers as after any loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_new_epoch_ends_the_resumed_subscription_with_insufficient_state() {
    let test = "with_redis_a_new_epoch_ends_the_resumed_subscription_with_insufficient_state";
    let Some(redis) = RedisServer::start_or_skip(test) else {
        return;
    };
    let unit = Unit::new(&[("BROKER", "redis"), ("REDIS_URL", &redis.url())]);
    let addr = unit.addr();
    let (mut old, notify) = unit.start("old", None);
    wait_for_200(addr, "/health").await;
    let (mut reader, _) = chat(addr, "reader").await;
    let epoch = subscribe(&mut reader, "room:e").await["epoch"].clone();
    let (mut writer, _) = chat(addr, "writer").await;
    publish(&mut writer, "room:e", json!(1)).await;
    assert_eq!(offsets(&publications(&mut reader, 1).await), [1]);

    let store = hand_over(&mut old, notify).await;
    redis.cli(&["del", "cs:{room:e}:meta", "cs:{room:e}:history"]);
    let (mut new, _new_notify) = unit.start("new", Some(&store));
    drop(store);
    let ended = reader.recv_reply().await;
    assert_eq!(
        ended,
        json!({"type":"unsubscribed","channel":"room:e","reason":"insufficient_state","resubscribe":true,"ts":ended["ts"]})
    );
    let again = ask(
        &mut reader,
        json!({"type":"subscribe","channel":"room:e","id":"r","recover":{"offset":1,"epoch":epoch}}),
    )
    .await;
    assert_eq!(again["recovered"], false, "{again}");
    assert_ne!(again["epoch"], epoch);
    launch::assert_clean_exit(new.terminate());
}

/// Two subscribers and a publisher that publishes all along, also while no process reads:
/// each subscriber gets every offset once, in order, in the epoch it subscribed in, and each
/// publish is answered once.
async fn every_publication_once_in_order(unit: Unit) {
    let addr = unit.addr();
    let (mut old, notify) = unit.start("old", None);
    wait_for_200(addr, "/health").await;
    let mut subscribers = Vec::new();
    let mut epoch = None;
    for id in ["sub-1", "sub-2"] {
        let (mut subscriber, _) = chat(addr, id).await;
        let subscribed = subscribe(&mut subscriber, "room").await;
        assert_eq!(subscribed["offset"], 0);
        epoch = Some(subscribed["epoch"].clone());
        subscribers.push(subscriber);
    }
    let epoch = epoch.unwrap();
    let (publisher, _) = chat(addr, "pub").await;
    let (orders, received) = tokio::sync::mpsc::unbounded_channel();
    let publishing = tokio::spawn(publish_continuously(publisher, "room", received));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let store = hand_over(&mut old, notify).await;
    // Sent while no process reads: the next process gives them the next offsets.
    orders.send(Publish::Burst(3)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut new, _new_notify) = unit.start("new", Some(&store));
    drop(store);
    wait_for_200(addr, "/health").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    orders.send(Publish::Stop).unwrap();
    let answers = publishing.await.unwrap();

    let published = answers.len() as u64;
    let expected: Vec<u64> = (1..=published).collect();
    assert_eq!(
        offsets(&answers),
        expected,
        "every publish answered once, in order"
    );
    assert!(
        answers.iter().all(|a| a["epoch"] == epoch),
        "one epoch: {answers:?}"
    );
    for subscriber in &mut subscribers {
        let got = publications(subscriber, published as usize).await;
        assert_eq!(offsets(&got), expected, "every offset once, in order");
        assert!(got.iter().all(|p| p["data"] == p["offset"]), "{got:?}");
    }
    println!(
        "{published} publications across the handover, all delivered once in order to 2 subscribers"
    );
    launch::assert_clean_exit(new.terminate());
}

/// With tokens: the identity travels in the record. The new process knows the user (its
/// publications carry it) and the channels the token allows, and ends the connection with
/// `goodbye token_expired` at the token's `exp`, without seeing the token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_connection_keeps_its_identity_across_a_handover() {
    let secret = "handover-test-secret-of-at-least-32-bytes";
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let unit = Unit::new(&[("AUTH_JWT_SECRET_FILE", secret_file.to_str().unwrap())]);
    let addr = unit.addr();
    let (mut old, notify) = unit.start("old", None);
    wait_for_200(addr, "/health").await;
    let exp = unix_now() + 5;
    let claims = json!({"sub": "alice", "exp": exp, "channels": ["room:*"]});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let bearer = format!("Bearer {token}");
    let url = format!("ws://{addr}/ws/chat/alice-1");
    let mut client = Client::connect_with(&url, &[("authorization", &bearer)])
        .await
        .expect("upgrade with the token");
    let welcome = client.recv_json().await;
    assert_eq!(welcome["user"], "alice", "{welcome}");

    let store = hand_over(&mut old, notify).await;
    let (mut new, _new_notify) = unit.start("new", Some(&store));
    drop(store);
    let forbidden = ask(
        &mut client,
        json!({"type": "subscribe", "channel": "admin", "id": "f"}),
    )
    .await;
    assert_eq!(forbidden["code"], "forbidden", "{forbidden}");
    subscribe(&mut client, "room:1").await;
    publish(&mut client, "room:1", json!("hi")).await;
    let publication = &publications(&mut client, 1).await[0];
    assert_eq!(publication["user"], "alice", "{publication}");

    let (close, seen) = client.recv_until_close(PATIENCE).await;
    let goodbye = seen.last().expect("a goodbye");
    assert_eq!(goodbye["type"], "goodbye", "{seen:?}");
    assert_eq!(goodbye["reason"], "token_expired", "{goodbye}");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
    let after_exp = unix_now_f64() - exp as f64;
    println!("goodbye token_expired {after_exp:.3} s after exp");
    // Not at another deadline well before `exp` (the two clocks, wall and monotonic, may
    // differ by a millisecond or so: no finer check).
    assert!(after_exp > -0.5, "{after_exp:.3} s before the token's exp");
    launch::assert_clean_exit(new.terminate());
}

fn unix_now_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
