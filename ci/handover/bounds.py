"""The bounds of carrying sockets in the queue of one datagram socket pair, as the handover
does (docs/handover.md, "Bounds of one queue in the store"). Prints one line per bound:

  scm_max_fd        descriptors one message may carry (one more is refused: EINVAL)
  queue_default     descriptors queued (253 per message) before the sender's buffer is full,
                    with the default SO_SNDBUF
  queue_raised      the same with SO_SNDBUF raised as far as net.core.wmem_max lets it
  inflight_limit    descriptors in flight for an unprivileged user whose RLIMIT_NOFILE is
                    --nofile (the kernel refuses the next message: ETOOMANYREFS); run as root,
                    it measures this in a child that drops to nobody (root itself is exempt)

Standard library only. Usage: python3 ci/handover/bounds.py [--nofile N]
"""

import argparse
import errno
import os
import resource
import socket
import sys

PER_MESSAGE = 253


def sysctl(name):
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return f.read().strip()


def fill(sender, fd, per_message):
    """Messages of `per_message` copies of fd until the kernel refuses one: (fds sent, errno).
    `sender` must be non-blocking (CPython waits out EAGAIN on a blocking socket, MSG_DONTWAIT
    or not).
    `fd` is a pipe, as the handover's are TCP sockets: a unix socket in flight would bring the
    kernel's garbage collector of unix sockets in."""
    sent = 0
    while True:
        try:
            socket.send_fds(sender, [sent.to_bytes(4, "little")], [fd] * per_message)
        except OSError as error:
            return sent, errno.errorcode.get(error.errno, str(error.errno))
        sent += per_message
        if sent > 10_000_000:
            return sent, "none (stopped at 10,000,000)"


def queue_capacity(raise_buffer):
    queue, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    if raise_buffer:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
    buffer = sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    carried, spare = os.pipe()
    sent, why = fill(sender, carried, PER_MESSAGE)
    for closing in (queue, sender):
        closing.close()
    os.close(carried)
    os.close(spare)
    return sent, why, buffer


def scm_max_fd():
    queue, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    carried, _ = os.pipe()
    best = 0
    for n in (1, 253, 254, 255):
        try:
            socket.send_fds(sender, [b"x"], [carried] * n)
            best = n
        except OSError:
            break
    return best


def inflight_limit(nofile):
    """In a child: drop to nobody with RLIMIT_NOFILE nofile, fill a raised queue."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if os.getuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            queue, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            sender.setblocking(False)
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
            carried, _ = os.pipe()
            sent, why = fill(sender, carried, 1)
            os.write(write_end, f"{sent} {why}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    result = os.read(read_end, 200).decode()
    os.waitpid(pid, 0)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--nofile", type=int, default=4096)
    args = parser.parse_args()
    print(f"kernel {os.uname().release}; net.core.wmem_default {sysctl('net.core.wmem_default')}, "
          f"net.core.wmem_max {sysctl('net.core.wmem_max')}, net.unix.max_dgram_qlen {sysctl('net.unix.max_dgram_qlen')}")
    print(f"scm_max_fd {scm_max_fd()}")
    for raised, name in ((False, "queue_default"), (True, "queue_raised")):
        sent, why, buffer = queue_capacity(raised)
        print(f"{name} {sent} descriptors ({sent // PER_MESSAGE} messages) with SO_SNDBUF {buffer}, then {why}")
    print(f"inflight_limit {inflight_limit(args.nofile)} (RLIMIT_NOFILE {args.nofile}, one per message)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
