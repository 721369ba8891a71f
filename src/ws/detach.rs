//! A WebSocket handed from one process to the next (docs/handover.md): taken off its task
//! between two frames, with the bytes read but not parsed and every frame not yet written,
//! and taken up again from them on the other side, where the unwritten frames leave first.

use std::io;
use std::time::Instant;

use tokio::net::TcpStream;

use super::outbox::Outbox;
use super::stream::WebSocket;

/// A WebSocket off its task: the socket, as a plain descriptor, and the bytes around it.
#[derive(Debug)]
pub struct Detached {
    pub stream: std::net::TcpStream,
    /// Read and not parsed yet: the start of the next frames, still masked.
    pub unparsed: Vec<u8>,
    /// Whole frames formatted and not written yet, in order.
    pub unwritten: Vec<u8>,
}

/// Takes `socket` off its task; only between frames ([`WebSocket::is_between_frames`]):
/// elsewhere the next reader could not take the bytes up. What the kernel takes of the
/// outbox is written first; the rest travels as frame bytes.
pub fn detach(mut socket: WebSocket, outbox: &mut Outbox) -> io::Result<Detached> {
    debug_assert!(
        socket.is_between_frames(),
        "detached in the middle of a frame"
    );
    while let Some(out) = outbox.pop() {
        socket.queue_frame(out.message);
    }
    socket.write_available();
    let (stream, unparsed, unwritten) = socket.into_parts()?;
    Ok(Detached {
        stream,
        unparsed,
        unwritten,
    })
}

/// Takes a detached WebSocket up again, on this runtime: its outbox (bounded by
/// `outbox_limit`) starts with the unwritten frames to flush.
pub fn resume(
    detached: Detached,
    max_message_bytes: usize,
    outbox_limit: usize,
    now: Instant,
) -> io::Result<(WebSocket, Outbox)> {
    detached.stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(detached.stream)?;
    let outbox = Outbox::resumed(outbox_limit, now, detached.unwritten.len());
    let socket = WebSocket::resume(
        stream,
        detached.unparsed,
        detached.unwritten,
        max_message_bytes,
    );
    Ok((socket, outbox))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::super::cork::{Io, next_io};
    use super::super::frames::Incoming;
    use super::*;

    /// A client's masked text frame.
    fn masked_text(text: &str) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_socket_detached_between_frames_goes_on_where_it_stopped() {
        let (mut client, server) = pair().await;
        let now = Instant::now();
        let mut socket = WebSocket::new(server, Vec::new(), 1024);
        let mut outbox = Outbox::new(1 << 20, now);
        // Two frames arrive at once: the first is read, the second waits in the buffer.
        let mut both = masked_text("one");
        both.extend(masked_text("two"));
        client.write_all(&both).await.unwrap();
        let first = next_io(&mut socket, &mut outbox, |_| ()).await;
        assert!(matches!(first, Io::Read(Some(Ok(Incoming::Text(t)))) if t.as_str() == "one"));
        outbox.push(Message::text("answer"), None).unwrap();
        assert!(socket.is_between_frames());
        let detached = detach(socket, &mut outbox).unwrap();
        assert_eq!(detached.unparsed, masked_text("two"));

        let (mut socket, mut outbox) = resume(detached, 1024, 1 << 20, now).unwrap();
        let second = next_io(&mut socket, &mut outbox, |_| ()).await;
        assert!(matches!(second, Io::Read(Some(Ok(Incoming::Text(t)))) if t.as_str() == "two"));
        let mut answer = [0u8; 8];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"\x81\x06answer");
    }

    #[tokio::test]
    async fn a_socket_in_the_middle_of_a_frame_is_not_between_frames() {
        let (mut client, server) = pair().await;
        let mut socket = WebSocket::new(server, Vec::new(), 1024);
        let mut outbox = Outbox::new(1 << 20, Instant::now());
        let frame = masked_text("a longer message");
        client.write_all(&frame[..10]).await.unwrap();
        let partial = next_io(&mut socket, &mut outbox, |_| ()).await;
        assert!(matches!(partial, Io::Read(Some(Ok(Incoming::Partial)))));
        assert!(!socket.is_between_frames());
    }
}
