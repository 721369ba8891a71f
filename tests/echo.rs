//! `/ws/echo` and the WebSocket layer under both endpoints, over real sockets: frames echoed
//! unchanged, and protocol violations closed with the right code (1002, 1007, 1009) instead of
//! a dropped TCP connection.

mod common;

use common::{Client, Server, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Upgrades a raw TCP connection to `path`, returning it after the 101 response.
async fn raw_upgrade(server: &Server, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.port
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tcp.read(&mut byte).await.unwrap(),
            1,
            "response ended early"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// A masked client frame with a short payload.
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut bytes = vec![first_byte, 0x80 | payload.len() as u8];
    bytes.extend_from_slice(&MASK);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    bytes
}

/// Reads server frames until a close frame: the payloads of the text frames before it, and
/// the close code (None: no close frame came).
async fn frames_until_close(tcp: &mut TcpStream) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    let read = async {
        loop {
            let mut header = [0u8; 2];
            tcp.read_exact(&mut header).await.ok()?;
            let len = match header[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    tcp.read_exact(&mut ext).await.ok()?;
                    u16::from_be_bytes(ext) as usize
                }
                127 => {
                    let mut ext = [0u8; 8];
                    tcp.read_exact(&mut ext).await.ok()?;
                    u64::from_be_bytes(ext) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.ok()?;
            match header[0] & 0x0f {
                0x8 => return Some(u16::from_be_bytes([payload[0], payload[1]])),
                0x1 => texts.push(String::from_utf8(payload).expect("text frames are UTF-8")),
                _ => {}
            }
        }
    };
    let code = tokio::time::timeout(WAIT, read).await.ok().flatten();
    (texts, code)
}

async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    frames_until_close(tcp).await.1
}

#[tokio::test]
async fn echo_returns_text_and_binary_unchanged() {
    let server = Server::start(&[("ENABLE_ECHO", "true")]).await;
    let mut client = Client::connect(&server.ws_url("/ws/echo")).await.unwrap();
    client
        .send(Message::text("not json at all ✓"))
        .await
        .unwrap();
    assert_eq!(
        client.next_frame(WAIT).await.unwrap().unwrap(),
        Message::text("not json at all ✓")
    );
    let bytes: Vec<u8> = (0..=255).collect();
    client.send(Message::binary(bytes.clone())).await.unwrap();
    assert_eq!(
        client.next_frame(WAIT).await.unwrap().unwrap(),
        Message::binary(bytes)
    );
    let big = "y".repeat(200_000);
    client.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(
        client.next_frame(WAIT).await.unwrap().unwrap(),
        Message::text(big)
    );
    assert_eq!(
        server.metric("websocket_connections_active").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let server = Server::start(&[("ENABLE_ECHO", "true")]).await;
    // RSV1 set without a negotiated extension.
    let mut tcp = raw_upgrade(&server, "/ws/echo").await;
    tcp.write_all(&frame(0x80 | 0x40 | 0x1, b"hi"))
        .await
        .unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1002));
    // An unknown opcode on the chat endpoint.
    let mut tcp = raw_upgrade(&server, "/ws/chat/raw").await;
    tcp.write_all(&frame(0x80 | 0x3, b"")).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(1002));
    assert_eq!(
        server
            .wait_metric(
                r#"websocket_errors_total{code="websocket_protocol"}"#,
                |v| v == 2.0
            )
            .await,
        2.0
    );
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let server = Server::start(&[("ENABLE_ECHO", "true")]).await;
    for path in ["/ws/echo", "/ws/chat/utf8"] {
        let mut tcp = raw_upgrade(&server, path).await;
        tcp.write_all(&frame(0x80 | 0x1, &[b'o', 0xff, b'k']))
            .await
            .unwrap();
        assert_eq!(close_code(&mut tcp).await, Some(1007), "{path}");
    }
}

#[tokio::test]
async fn echo_frames_over_the_hard_limit_close_with_1009() {
    let server = Server::start(&[("ENABLE_ECHO", "true"), ("MAX_MESSAGE_BYTES", "1024")]).await;
    let mut client = Client::connect(&server.ws_url("/ws/echo")).await.unwrap();
    client.send(Message::binary(vec![0u8; 4096])).await.unwrap();
    assert!(
        matches!(client.next_frame(WAIT).await, Some(Ok(Message::Binary(_)))),
        "4 x the limit is echoed"
    );
    client.send(Message::binary(vec![0u8; 4097])).await.unwrap();
    let (frame, _) = client.recv_until_close(WAIT).await;
    assert_eq!(u16::from(frame.expect("close frame").code), 1009);
}

#[tokio::test]
async fn frames_read_before_a_violation_are_still_answered() {
    // The server reads every frame of one TCP read before writing the answers together: a bad
    // frame after good ones must not swallow their answers.
    let server = Server::start(&[("ENABLE_ECHO", "true")]).await;
    let first = br#"{"type":"message","id":"1","data":"a"}"#;
    let second = br#"{"type":"message","id":"2","data":"b"}"#;
    for path in ["/ws/echo", "/ws/chat/pipelined"] {
        let mut tcp = raw_upgrade(&server, path).await;
        let mut burst = frame(0x81, first);
        burst.extend(frame(0x81, second));
        burst.extend(frame(0x80 | 0x40 | 0x1, b"rsv1"));
        tcp.write_all(&burst).await.unwrap();
        let (texts, code) = frames_until_close(&mut tcp).await;
        let answered: Vec<&str> = texts
            .iter()
            .filter(|text| !text.contains("connection_established"))
            .map(String::as_str)
            .collect();
        assert_eq!(answered.len(), 2, "{path}: {texts:?}");
        assert!(answered[0].contains(r#""id":"1""#), "{path}: {texts:?}");
        assert!(answered[1].contains(r#""id":"2""#), "{path}: {texts:?}");
        assert_eq!(code, Some(1002), "{path}");
    }
}
