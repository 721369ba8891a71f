//! The connections' sockets in one store entry: the queue of a `SOCK_DGRAM` socket pair,
//! `SCM_MAX_FD` sockets per message, each message led by the index of its first socket. One
//! entry instead of one per connection, because systemd 252 compares each fd added to the
//! store with every fd already there (10,000 entries: 16 s). A pair's queue end does not
//! report `POLLHUP` when the sending end closes (systemd drops a stored fd that does), and a
//! connected pair skips the receiver's queue-length limit (`net.unix.max_dgram_qlen`): the
//! sender's buffer (`SO_SNDBUF`, raised here) and the fds in flight per user (the sender's
//! `RLIMIT_NOFILE`) bound it (docs/handover.md, "Bounds").

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub const FDS_PER_MESSAGE: usize = 253;
/// Asked of `SO_SNDBUF` (the kernel caps it at `net.core.wmem_max`).
const SEND_BUFFER_BYTES: usize = 64 << 20;

/// The queue with `fds` in it, in order, and how many got in: all of them, unless the
/// kernel refused a message (its buffer or the fds-in-flight limit), whose error is returned
/// beside the count.
pub fn fill(fds: &[BorrowedFd<'_>]) -> io::Result<(OwnedFd, usize, Option<io::Error>)> {
    let (queue, sender) = UnixDatagram::pair()?;
    // Best effort: the cap is the kernel's; the refusal of a message below is what counts.
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(&sender, SEND_BUFFER_BYTES);
    let mut sent = 0;
    for chunk in fds.chunks(FDS_PER_MESSAGE) {
        if let Err(error) = send_chunk(&sender, sent as u32, chunk) {
            return Ok((queue.into(), sent, Some(error)));
        }
        sent += chunk.len();
    }
    Ok((queue.into(), sent, None))
}

fn send_chunk(sender: &UnixDatagram, first: u32, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "more descriptors than one message carries",
        ));
    }
    let index = first.to_le_bytes();
    sendmsg(
        sender,
        &[IoSlice::new(&index)],
        &mut control,
        SendFlags::DONTWAIT,
    )?;
    Ok(())
}

/// Every socket in the queue, with its index, in the order sent.
pub fn drain(queue: &OwnedFd) -> io::Result<Vec<(usize, OwnedFd)>> {
    let mut sockets = Vec::new();
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut index = [0u8; 4];
        let received = match recvmsg(
            queue,
            &mut [IoSliceMut::new(&mut index)],
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => received,
            Err(Errno::AGAIN) => return Ok(sockets),
            Err(e) => return Err(e.into()),
        };
        if received.flags.contains(ReturnFlags::CTRUNC) || received.bytes != index.len() {
            return Err(io::Error::other(
                "a message of the handover queue is malformed",
            ));
        }
        let first = u32::from_le_bytes(index) as usize;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                sockets.extend(fds.enumerate().map(|(i, fd)| (first + i, fd)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn sockets_come_out_in_order_with_their_index() {
        let sockets: Vec<UnixDatagram> = (0..FDS_PER_MESSAGE + 7)
            .map(|_| UnixDatagram::unbound().unwrap())
            .collect();
        let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(AsFd::as_fd).collect();
        let (queue, sent, error) = fill(&fds).unwrap();
        assert_eq!((sent, error.is_none()), (sockets.len(), true));
        drop(sockets);
        let received = drain(&queue).unwrap();
        let indexes: Vec<usize> = received.iter().map(|(index, _)| *index).collect();
        assert_eq!(indexes, (0..FDS_PER_MESSAGE + 7).collect::<Vec<_>>());
        assert!(drain(&queue).unwrap().is_empty(), "emptied");
    }
}
