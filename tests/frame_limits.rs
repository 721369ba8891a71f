//! The frame limits over real sockets (issue 14, item 3): every frame spends the frame budget
//! (`FRAME_RATE_LIMIT`), and one fragmented message is bounded in frames (`MAX_FRAGMENTS`) and
//! in time (`FRAGMENT_TIMEOUT`). Each ends in `goodbye` `policy_violation` and close 1008.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server, WAIT};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

fn fragment(opcode: Data, text: &str, last: bool) -> Message {
    Message::Frame(Frame::message(text.to_owned(), OpCode::Data(opcode), last))
}

/// Reads to the close frame: its code, and the `type` (and `code`) of each JSON message.
async fn close_and_messages(client: &mut Client) -> (Option<u16>, Vec<String>) {
    let (close, seen) = client.recv_until_close(WAIT).await;
    let kinds = seen
        .iter()
        .map(|m| match m["code"].as_str() {
            Some(code) => format!("{}:{code}", m["type"].as_str().unwrap()),
            None => m["type"].as_str().unwrap().to_owned(),
        })
        .collect();
    (close.map(|c| u16::from(c.code)), kinds)
}

#[tokio::test]
async fn a_message_of_more_fragments_than_allowed_is_closed_1008() {
    let server = Server::start(&[("MAX_FRAGMENTS", "4")]).await;
    let (mut client, _) = Client::chat(&server, "fragments").await;
    client
        .send(fragment(Data::Text, r#"{"type":"message","data":""#, false))
        .await
        .unwrap();
    for _ in 0..4 {
        // The server may close before the last ones are written.
        let _ = client.send(fragment(Data::Continue, "x", false)).await;
    }
    let (close, kinds) = close_and_messages(&mut client).await;
    assert_eq!(close, Some(1008), "{kinds:?}");
    assert_eq!(kinds, ["goodbye"]);
}

#[tokio::test]
async fn a_fragmented_message_slower_than_the_timeout_is_closed_1008() {
    let server = Server::start(&[("FRAGMENT_TIMEOUT", "500")]).await;
    let (mut client, _) = Client::chat(&server, "slow-fragments").await;
    let started = Instant::now();
    client
        .send(fragment(Data::Text, r#"{"type":"message","data":""#, false))
        .await
        .unwrap();
    let (close, kinds) = close_and_messages(&mut client).await;
    let took = started.elapsed();
    assert_eq!(close, Some(1008), "{kinds:?}");
    // The configured timeout honoured, with a generous margin for a busy machine.
    assert!(took >= Duration::from_millis(450), "closed after {took:?}");
}

#[tokio::test]
async fn a_ping_flood_is_told_once_then_closed_1008() {
    let server = Server::start(&[("FRAME_RATE_LIMIT", "50")]).await;
    let (mut client, _) = Client::chat(&server, "pings").await;
    for _ in 0..200 {
        if client
            .send(Message::Ping(Default::default()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (close, kinds) = close_and_messages(&mut client).await;
    assert_eq!(close, Some(1008), "{kinds:?}");
    assert_eq!(kinds, ["error:rate_limited", "goodbye"]);
}
