"""The observable contract of issue 14 that the attacks hold the server to: the defaults of the
new settings, the metric names and label values, and the margins this suite allows itself
where the contract says "a small constant" or "about".
"""

KiB, MiB = 1024, 1024 * 1024

# New settings and their defaults.
MAX_HEADER_BYTES = 8192
MAX_PENDING_HTTP = 1024
MAX_PENDING_HTTP_PER_IP = 32
CLIENT_IPV6_PREFIX = 64
FRAME_RATE_LIMIT = 1000
MAX_FRAGMENTS = 64
FRAGMENT_TIMEOUT_MS = 10_000

# Existing settings the bounds are stated in (their defaults).
OUTBOUND_QUEUE_BYTES = 1 * MiB
MAX_MESSAGE_BYTES = 64 * KiB

# Metrics.
HTTP_PENDING = "websocket_http_pending"
HTTP_REFUSED = "websocket_http_refused_total"
REFUSED_REASONS = ("pending_limit", "pending_ip_limit", "header_too_large", "header_timeout", "bad_handshake")
ACCEPT_ERRORS = "websocket_accept_errors_total"
ACCEPT_ERROR_KINDS = ("fd_limit", "other")

# "Memory for N pending connections at most N x (MAX_HEADER_BYTES + small constant)": the small
# constant this suite allows per pending connection (hyper's connection, its write buffer, the
# task, the socket), and a slack for everything else the process holds meanwhile (the honest
# clients, allocator granularity).
PENDING_CONNECTION_OVERHEAD = 16 * KiB
RSS_SLACK = 16 * MiB

# "a client that never reads and floods pings pins at most OUTBOUND_QUEUE_BYTES +
# MAX_MESSAGE_BYTES + 64 KiB".
NON_READER_BOUND = OUTBOUND_QUEUE_BYTES + MAX_MESSAGE_BYTES + 64 * KiB
# "read/write buffers shrink back after a large message": what a connection may keep after one
# refused 250 KiB frame, beyond an idle connection (about 3.4 KiB): a tenth of that frame.
AFTER_LARGE_FRAME_BOUND = 32 * KiB
# "RSS returns to within baseline + 32 MiB within 10 s" after the spike.
SPIKE_RSS_MARGIN = 32 * MiB
SPIKE_SETTLE_SECONDS = 10
