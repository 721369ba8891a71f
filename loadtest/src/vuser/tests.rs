//! A user against a scripted protocol v1 server on loopback: the tests play the server's side
//! by hand, frame by frame, and check what the user sent, how it left and what it counted.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::connect::connect;
use super::session::{Session, SessionEnd};
use super::{Behaviour, UserContext, run_user};
use crate::net::Target;
use crate::stats::Counts;

mod channels;
mod tls;

/// The server's side of a connection (over TLS in the `tls` tests).
type Ws<S = TcpStream> = WebSocketStream<S>;

/// A scripted protocol v1 server on loopback: the tests play the server's side by hand.
async fn listen() -> (Target, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    (Target::parse(&url, None).unwrap(), listener)
}

/// Accepts one user and greets it with `connection_established`.
async fn accept(listener: &TcpListener) -> Ws {
    let (stream, _) = listener.accept().await.unwrap();
    upgrade_and_greet(stream).await
}

async fn upgrade_and_greet<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Ws<S> {
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    let hello = json!({"type": "connection_established", "connectionId": "t",
        "serverId": "script", "heartbeatIntervalMs": 30000, "ts": 1});
    say(&mut ws, hello).await;
    ws
}

async fn say<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

fn goodbye(reason: &str, reconnect: bool) -> Value {
    json!({"type": "goodbye", "reason": reason, "reconnect": reconnect, "ts": 1})
}

fn answer(id: &str) -> Value {
    json!({"type": "message_response", "id": id, "data": "x", "ts": 1})
}

/// The user's next frame: the id of a `message`, or the code of its close.
async fn next_from_user<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
) -> Result<String, CloseCode> {
    match ws.next().await {
        Some(Ok(Message::Text(text))) => {
            let message: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(message["type"], "message");
            Ok(message["id"].as_str().unwrap().to_owned())
        }
        Some(Ok(Message::Close(Some(frame)))) => Err(frame.code),
        other => panic!("expected a message or a close frame, got {other:?}"),
    }
}

/// Reads to the end: sends tungstenite's reply to the user's close, and tells whether
/// the user answered our own close with a close frame.
async fn read_to_end<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) -> bool {
    let mut close_seen = false;
    while let Some(Ok(frame)) = ws.next().await {
        close_seen |= frame.is_close();
    }
    close_seen
}

fn context(target: Target, behaviour: Behaviour) -> UserContext {
    UserContext::new(target, behaviour, Arc::default(), "t".into()).unwrap()
}

fn closed_loop(timeout_ms: u64) -> Behaviour {
    Behaviour {
        rate: 0.0,
        closed_loop_window: Some(1),
        payload_bytes: 8,
        timeout_ms,
        churn: false,
        channels: None,
    }
}

/// Connects and runs one session, bounded so that a user that never leaves fails the
/// test instead of hanging it.
async fn one_session(ctx: &UserContext) -> (SessionEnd, Counts) {
    let (ws, _) = connect(ctx, "u", None).await.unwrap();
    let stop = CancellationToken::new();
    let end = timeout(Duration::from_secs(20), Session::new(ctx, ws).run(&stop))
        .await
        .expect("the user left by itself");
    (end, ctx.recorder.take(1).counts)
}

#[tokio::test]
async fn after_goodbye_a_user_sends_nothing_new_takes_its_answer_and_closes_first() {
    let (target, listener) = listen().await;
    let server = tokio::spawn(async move {
        let mut ws = accept(&listener).await;
        let id = next_from_user(&mut ws).await.unwrap();
        // The answer follows the goodbye, as during the server's grace.
        say(&mut ws, goodbye("server_shutdown", true)).await;
        say(&mut ws, answer(&id)).await;
        // A closed loop would send its next message at once: the old behaviour did.
        assert_eq!(next_from_user(&mut ws).await, Err(CloseCode::Normal));
        read_to_end(&mut ws).await;
    });
    let ctx = context(target, closed_loop(10_000));
    let (end, counts) = one_session(&ctx).await;
    server.await.unwrap();
    assert_eq!(end, SessionEnd::Goodbye { reconnect: true });
    assert_eq!(
        (counts.sent, counts.answered, counts.messages_failed()),
        (1, 1, 0)
    );
    assert_eq!(counts.goodbye_reasons["server_shutdown"], 1);
    assert_eq!(
        counts.close_codes,
        [("1000".to_owned(), 1)].into(),
        "the server's echo of our close"
    );
}

#[tokio::test]
async fn open_loop_sends_due_after_goodbye_are_neither_sent_nor_unsent() {
    let (target, listener) = listen().await;
    let server = tokio::spawn(async move {
        let mut ws = accept(&listener).await;
        let mut goodbye_said = false;
        // Answer everything, as the server's grace does, until the user closes.
        loop {
            match next_from_user(&mut ws).await {
                Ok(id) => {
                    if !goodbye_said {
                        say(&mut ws, goodbye("server_shutdown", false)).await;
                        goodbye_said = true;
                    }
                    say(&mut ws, answer(&id)).await;
                }
                Err(code) => {
                    assert_eq!(code, CloseCode::Normal);
                    break;
                }
            }
        }
        read_to_end(&mut ws).await;
    });
    let behaviour = Behaviour {
        rate: 50.0,
        closed_loop_window: None,
        ..closed_loop(10_000)
    };
    let ctx = context(target, behaviour);
    let (end, counts) = one_session(&ctx).await;
    server.await.unwrap();
    assert_eq!(end, SessionEnd::Goodbye { reconnect: false });
    assert!(counts.sent >= 1, "{counts:?}");
    assert_eq!(counts.answered, counts.sent, "{counts:?}");
    assert_eq!(
        (counts.unsent, counts.messages_failed()),
        (0, 0),
        "{counts:?}"
    );
    assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
}

#[tokio::test]
async fn answers_missing_when_the_goodbye_grace_ends_count_as_failed() {
    let (target, listener) = listen().await;
    let server = tokio::spawn(async move {
        let mut ws = accept(&listener).await;
        next_from_user(&mut ws).await.unwrap();
        say(&mut ws, goodbye("server_shutdown", true)).await;
        // Never answered: the user gives up after its short grace and closes.
        assert_eq!(next_from_user(&mut ws).await, Err(CloseCode::Normal));
        read_to_end(&mut ws).await;
    });
    let ctx = context(target, closed_loop(200));
    let (end, counts) = one_session(&ctx).await;
    server.await.unwrap();
    assert_eq!(end, SessionEnd::Goodbye { reconnect: true });
    assert_eq!((counts.sent, counts.answered), (1, 0));
    assert_eq!(counts.timed_out + counts.unanswered, 1, "{counts:?}");
    assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
}

#[tokio::test]
async fn a_server_that_closes_right_after_goodbye_gets_our_close_reply() {
    let (target, listener) = listen().await;
    let server = tokio::spawn(async move {
        let mut ws = accept(&listener).await;
        next_from_user(&mut ws).await.unwrap();
        say(&mut ws, goodbye("idle_timeout", false)).await;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "idle_timeout".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        assert!(read_to_end(&mut ws).await, "the user replies to our close");
    });
    let ctx = context(target, closed_loop(10_000));
    let (end, counts) = one_session(&ctx).await;
    server.await.unwrap();
    assert_eq!(end, SessionEnd::Goodbye { reconnect: false });
    assert_eq!((counts.sent, counts.unanswered), (1, 1));
    assert_eq!(counts.goodbye_reasons["idle_timeout"], 1);
    assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
}

#[tokio::test]
async fn a_user_reconnects_after_goodbye_and_a_stopped_connection_is_not_counted() {
    let (target, listener) = listen().await;
    let stop = CancellationToken::new();
    let stop_when_back = stop.clone();
    let server = tokio::spawn(async move {
        let mut first = accept(&listener).await;
        let id = next_from_user(&mut first).await.unwrap();
        say(&mut first, goodbye("server_shutdown", true)).await;
        say(&mut first, answer(&id)).await;
        assert_eq!(next_from_user(&mut first).await, Err(CloseCode::Normal));
        read_to_end(&mut first).await;
        let mut second = accept(&listener).await;
        // Its first message shows that the user is past its handshake.
        let id = next_from_user(&mut second).await.unwrap();
        stop_when_back.cancel();
        say(&mut second, answer(&id)).await;
        assert_eq!(next_from_user(&mut second).await, Err(CloseCode::Normal));
        read_to_end(&mut second).await;
    });
    let ctx = Arc::new(context(target, closed_loop(10_000)));
    let user = run_user(ctx.clone(), 1, None, stop);
    timeout(Duration::from_secs(20), user)
        .await
        .expect("the user stops when told");
    server.await.unwrap();
    let counts = ctx.recorder.take(1).counts;
    assert_eq!((counts.connects, counts.reconnects), (2, 1));
    assert_eq!(counts.goodbye_reasons["server_shutdown"], 1);
    assert_eq!(
        counts.close_codes,
        [("1000".to_owned(), 1)].into(),
        "only the connection the server ended"
    );
}
