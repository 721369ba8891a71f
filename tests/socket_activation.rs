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

/// The direct data path (docs/deploy.md): the colour's loopback socket and the shared
/// reuseport one are both named `ws` (`ws@.socket`, `ws-public@.socket`), and both are served.
/// At SIGTERM the server closes every one of them before its drain, so that the kernel moves
/// what waits in a shared listener's queue to the next colour (net.ipv4.tcp_migrate_req):
/// while a client is still being drained, nothing listens on either address any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_every_socket_named_ws_and_closes_them_all_at_sigterm() {
    let (own, metrics, shared) = (listening_socket(), listening_socket(), listening_socket());
    let addrs = [own.local_addr().unwrap(), shared.local_addr().unwrap()];
    let (mut command, _) = server_command("activated-shared");
    pass_sockets(
        &mut command,
        &[&own, &metrics, &shared],
        Some("ws:metrics:ws"),
    );
    let mut server = Server::spawn(command);
    drop((own, metrics, shared));

    for addr in addrs {
        wait_for_200(addr, "/health").await;
    }
    let (_own_client, welcome) = chat(addrs[0], "on-own").await;
    assert_eq!(welcome["serverId"], "activated-shared");
    let (mut shared_client, welcome) = chat(addrs[1], "on-shared").await;
    assert_eq!(welcome["connectionId"], "on-shared");

    server.signal(libc::SIGTERM);
    // The drain (SHUTDOWN_TIMEOUT 3 s) spreads the goodbyes; the listeners are gone first.
    let deadline = std::time::Instant::now() + PATIENCE;
    while addrs.iter().any(|&addr| is_listening(addr)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a listener is still open after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Still draining (the client on the own socket does not answer its goodbye, so the
    // server waits for it until the deadline): the listeners closed before the exit.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
    let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
    assert_ne!(
        state,
        Some('Z'),
        "the server exited before the listeners were seen closed"
    );
    let (_, seen) = shared_client.recv_until_close(PATIENCE).await;
    assert!(
        seen.iter().any(|m| m["reason"] == "server_shutdown"),
        "the client on the shared socket got no goodbye: {seen:?}"
    );
    assert_clean_exit(server.wait());
}
