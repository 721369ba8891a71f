//! Buffers lent per thread: a connection holds a read buffer only while a frame is partly
//! read, and a write buffer only while frames wait for the kernel. In between, the buffer
//! waits here for the next connection this thread serves, so that an idle connection holds
//! neither (about 1.3 KiB per idle connection, measured: docs/benchmarks.md, "Where an idle
//! connection's memory goes"). One spare of each per thread: taking and giving one back is a
//! thread-local swap, no allocation.

use std::cell::Cell;

use bytes::BytesMut;

thread_local! {
    static READ: Cell<Option<BytesMut>> = const { Cell::new(None) };
    static WRITE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// An empty read buffer: the thread's spare (reading goes on in what it has left free, as it
/// would in the connection's own), or a new one of `capacity` bytes.
pub(super) fn read_buffer(capacity: usize) -> BytesMut {
    READ.with(Cell::take)
        .unwrap_or_else(|| BytesMut::with_capacity(capacity))
}

/// Gives an empty read buffer back to this thread, unless it has no memory or more than
/// `kept` bytes.
pub(super) fn give_back_read_buffer(buffer: BytesMut, kept: usize) {
    debug_assert!(buffer.is_empty());
    if (1..=kept).contains(&buffer.capacity()) {
        READ.with(|spare| spare.set(Some(buffer)));
    }
}

/// An empty write buffer: the thread's spare (with its capacity), or a new one.
pub(super) fn write_buffer() -> Vec<u8> {
    WRITE.with(Cell::take)
}

/// Gives an empty write buffer back to this thread, unless it has no memory or more than
/// `kept` bytes.
pub(super) fn give_back_write_buffer(buffer: Vec<u8>, kept: usize) {
    debug_assert!(buffer.is_empty());
    if (1..=kept).contains(&buffer.capacity()) {
        WRITE.with(|spare| spare.set(buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_lent_again_with_its_memory() {
        let mut buffer = write_buffer();
        buffer.extend_from_slice(b"frame");
        buffer.clear();
        let (pointer, capacity) = (buffer.as_ptr(), buffer.capacity());
        give_back_write_buffer(buffer, 1024);
        let again = write_buffer();
        assert_eq!((again.as_ptr(), again.capacity()), (pointer, capacity));
        assert_eq!(write_buffer().capacity(), 0, "one spare per thread");
    }

    #[test]
    fn a_large_buffer_is_freed_not_kept() {
        give_back_write_buffer(Vec::with_capacity(4096), 1024);
        assert_eq!(write_buffer().capacity(), 0);
        give_back_read_buffer(BytesMut::with_capacity(4096), 1024);
        assert!(READ.with(Cell::take).is_none());
    }

    #[test]
    fn a_read_buffer_still_shared_with_a_frame_is_replaced_not_overwritten() {
        let mut buffer = read_buffer(64);
        buffer.extend_from_slice(b"payload");
        let frame = buffer.split_to(7).freeze();
        give_back_read_buffer(buffer, 1024);
        let mut again = read_buffer(64);
        again.reserve(64);
        again.extend_from_slice(b"another");
        assert_eq!(&frame[..], b"payload");
        assert!(again.capacity() >= 64);
    }
}
