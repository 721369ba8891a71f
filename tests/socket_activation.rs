//! Socket activation: the server serves on the listening sockets it is handed as fds 3, 4, ...
//! with `LISTEN_FDS` (and `LISTEN_FDNAMES`), exactly as systemd passes `ws@.socket` and
//! `ws-metrics@.socket`, and then binds neither `PORT` nor `METRICS_ADDR` itself.

mod common;
mod launch;

use common::Client;
use launch::{
    PATIENCE, Server, assert_clean_exit, chat, get, is_listening, listening_socket, pass_sockets,
    server_command, wait_for_200,
};
use serde_json::Value;
use tokio_tungstenite::MaybeTlsStream;

/// One unnamed socket (`LISTEN_FDS=1`) is the public listener; metrics stay on `METRICS_ADDR`.
#[tokio::test]
async fn serves_on_a_single_passed_socket() {
    let public = listening_socket();
    let public_addr = public.local_addr().unwrap();
    let (mut command, bind_addrs) = server_command("activated-one");
    pass_sockets(&mut command, &[&public], None);
    let mut server = Server::spawn(command);
    // Only the child holds the socket now: whatever answers is the server.
    drop(public);

    let health: Value = serde_json::from_str(&wait_for_200(public_addr, "/health").await).unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["serverId"], "activated-one", "{health}");
    let (_client, welcome) = chat(public_addr, "activated-1").await;
    assert_eq!(welcome["connectionId"], "activated-1");
    assert_eq!(welcome["serverId"], "activated-one");

    assert!(
        !is_listening(bind_addrs.public),
        "the server also bound PORT ({})",
        bind_addrs.public
    );
    let metrics = wait_for_200(bind_addrs.metrics, "/metrics").await;
    assert!(
        metrics.contains("websocket_connections_active 1"),
        "{metrics}"
    );
    assert_clean_exit(server.terminate());
}

/// Two named sockets (`LISTEN_FDNAMES=ws:metrics`): WebSockets and `/health` on `ws`,
/// `/metrics` on `metrics` only, and no socket of the server's own.
#[tokio::test]
async fn serves_on_named_ws_and_metrics_sockets() {
    let public = listening_socket();
    let metrics = listening_socket();
    let (public_addr, metrics_addr) = (public.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (mut command, bind_addrs) = server_command("activated-two");
    pass_sockets(&mut command, &[&public, &metrics], Some("ws:metrics"));
    let mut server = Server::spawn(command);
    drop((public, metrics));

    wait_for_200(public_addr, "/health").await;
    let (_client, welcome) = chat(public_addr, "named-1").await;
    assert_eq!(welcome["serverId"], "activated-two");
    let scrape = wait_for_200(metrics_addr, "/metrics").await;
    assert!(
        scrape.contains("websocket_connections_active 1"),
        "{scrape}"
    );
    assert!(scrape.contains(r#"server_id="activated-two""#), "{scrape}");

    let (status, _) = get(public_addr, "/metrics").await.unwrap();
    assert_eq!(
        status, 404,
        "metrics must never be served on the public socket"
    );
    let (status, _) = get(metrics_addr, "/health").await.unwrap();
    assert_eq!(status, 404, "the metrics socket serves only /metrics");
    assert!(
        !is_listening(bind_addrs.public),
        "the server also bound PORT ({})",
        bind_addrs.public
    );
    assert!(
        !is_listening(bind_addrs.metrics),
        "the server also bound METRICS_ADDR ({})",
        bind_addrs.metrics
    );
    assert_clean_exit(server.terminate());
}

/// The order of the passed sockets does not matter: the names do.
#[tokio::test]
async fn names_decide_which_socket_is_which() {
    let metrics = listening_socket();
    let public = listening_socket();
    let (public_addr, metrics_addr) = (public.local_addr().unwrap(), metrics.local_addr().unwrap());
    let (mut command, _) = server_command("activated-swapped");
    pass_sockets(&mut command, &[&metrics, &public], Some("metrics:ws"));
    let mut server = Server::spawn(command);
    drop((public, metrics));

    wait_for_200(public_addr, "/health").await;
    assert!(
        wait_for_200(metrics_addr, "/metrics")
            .await
            .contains("websocket_connections_active")
    );
    assert_clean_exit(server.terminate());
}

/// Several sockets but none named `ws`: a clear start-up error, not a guess.
#[test]
fn refuses_unnamed_sockets_it_cannot_tell_apart() {
    let (first, second) = (listening_socket(), listening_socket());
    let (mut command, _) = server_command("activated-bad");
    pass_sockets(&mut command, &[&first, &second], Some("a:b"));
    let mut server = Server::spawn(command);
    assert!(!server.wait().success(), "started without a `ws` socket");
    let log = server.log_text();
    assert!(
        log.contains("`ws`"),
        "the error does not name the missing socket: {log}"
    );
}

/// A restart on the same socket, as `systemctl restart` does with a socket unit: the socket
/// stays open in the manager (here, this test) across the restart, so a client arriving while
/// no server runs is queued by the kernel, not refused, and the next server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_socket_refuses_no_client() {
    let socket = listening_socket();
    let addr = socket.local_addr().unwrap();
    let start = |server_id: &str| {
        let (mut command, _) = server_command(server_id);
        pass_sockets(&mut command, &[&socket], None);
        Server::spawn(command)
    };

    let mut first = start("generation-1");
    wait_for_200(addr, "/health").await;
    let (mut old_client, welcome) = chat(addr, "before-restart").await;
    assert_eq!(welcome["serverId"], "generation-1");
    first.signal(libc::SIGTERM);
    let (close, seen) = old_client.recv_until_close(PATIENCE).await;
    assert!(
        seen.iter().any(|m| m["reason"] == "server_shutdown"),
        "{seen:?}"
    );
    assert_eq!(close.map(|frame| u16::from(frame.code)), Some(1001));
    assert_clean_exit(first.wait());

    // No server runs now: the kernel completes the client's TCP handshake on the backlog.
    let queued = tokio::net::TcpStream::connect(addr)
        .await
        .expect("queued, not refused");
    let waiting = tokio::spawn(async move {
        let url = format!("ws://{addr}/ws/chat/during-restart");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(queued))
            .await
            .expect("upgraded by the next server");
        Client { ws }.recv_json().await
    });
    let mut second = start("generation-2");
    let welcome = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("served")
        .unwrap();
    assert_eq!(welcome["serverId"], "generation-2", "{welcome}");
    assert_eq!(welcome["connectionId"], "during-restart");
    assert_clean_exit(second.terminate());
}
