"""Every tunable default of the SDK, in one place.

What belongs here: a number someone might reasonably change to trade speed, memory, patience or load against each
other: timeouts, intervals, grace periods, sizes, counts, retry and backoff settings,
buffer and cache bounds. Each one says why it has its value. Environment variable names
and default endpoints are here too, being the other knobs a user turns.

What stays where it is used: protocol constants nobody tunes (header names, URL paths,
enum-like strings, wire opcodes, the API's own documented limits such as label sizes,
process exit codes), and control-flow details private to one module.
``tests/test_constants_home.py`` fails when a numeric tunable is defined elsewhere.

Plain numbers only, no imports: the pure modules that read them (output budgets, the
reconnect policy) stay free of httpx; ``_config`` builds the ``httpx.Timeout`` and
``httpx.Limits`` from them.

The code runner's are here too (its section below); only the embedded server
(``wrenn.local``) keeps its own, beside the code that uses them.
"""

from __future__ import annotations

# --- Environment and endpoints -------------------------------------------------------

ENV_API_KEY = "WRENN_API_KEY"
ENV_BASE_URL = "WRENN_BASE_URL"
ENV_PROXY_DOMAIN = "WRENN_PROXY_DOMAIN"
ENV_LOG = "WRENN_LOG"

DEFAULT_BASE_URL = "https://app.wrenn.dev/api"
DEFAULT_PROXY_DOMAIN = "wrenn.dev"
DEFAULT_PROXY_BASE_HOST = "app.wrenn.dev"

# --- One HTTP call: timeouts and deadlines -------------------------------------------

# Per-phase timeouts of one HTTP attempt. The read timeout is per chunk, so a
# server that drips bytes never trips it: the per-call deadline below covers that.
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_WRITE_TIMEOUT = 30.0
DEFAULT_POOL_TIMEOUT = 10.0
# Wall-clock budget of one call, retries and backoff included.
DEFAULT_TOTAL_TIMEOUT = 120.0

# Server-side work that legitimately takes long gets a longer read budget.
CREATE_READ_TIMEOUT = 120.0  # a synchronous VM boot on the platform
PAUSE_RESUME_READ_TIMEOUT = 120.0  # memory snapshot / restore
SNAPSHOT_READ_TIMEOUT = 300.0  # the server allows a detached 5-minute RPC
EXEC_MARGIN = 15.0  # HTTP read budget of a foreground exec beyond its timeout_sec
# Slack added to a long call's deadline beyond its read and connect budgets.
LONG_CALL_SLACK = 5.0
# Waits for a free connection one call may chain while the pool keeps moving: a bound on
# the loop for a call without any deadline (each wait lasts a pool timeout).
MAX_POOL_WAITS = 100_000

# --- Retries -------------------------------------------------------------------------

# Three attempts per call, backoff min(0.5 * 2^n, 8) s with jitter: the openai-python
# policy RELIABILITY.md takes as its bar.
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a longer Retry-After means "do not retry now"
# A Retry-After beyond a day is not a plan but garbage (e.g. "99999999999999999999"):
# it is ignored and the normal backoff applies.
MAX_SANE_RETRY_AFTER = 86400.0

# Client-wide retry budget (a token bucket, as in botocore's standard mode).
RETRY_BUDGET_TOKENS = 500
RETRY_COST = 5
TIMEOUT_RETRY_COST = 10
RETRY_REFUND_ON_SUCCESS = 1

# --- Connection pool -----------------------------------------------------------------

# RELIABILITY.md's pool: 20 connections, all of them kept alive between calls (a client
# talks to one API host, so every idle connection is likely to be reused).
DEFAULT_MAX_CONNECTIONS = 20
DEFAULT_MAX_KEEPALIVE = 20
# Idle connections older than this are closed rather than reused (the server may have
# dropped them meanwhile).
DEFAULT_KEEPALIVE_EXPIRY = 30.0
# A host name may resolve to IPv6 and IPv4 addresses: under asyncio the next address is
# tried this many seconds after the previous one (anyio's delay too; trio's own backend
# keeps its own). An address literal is connected to directly.
HAPPY_EYEBALLS_DELAY = 0.25
# Bytes a connection buffers from the server before it stops reading from the socket
# (back-pressure; httpcore reads 64 KiB at a time).
CONNECTION_READ_BUFFER = 256 * 1024

# --- Request and response bodies -----------------------------------------------------

# Largest JSON body we buffer and decode; past it a typed error is raised.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# Longest excerpt of a response body kept in an exception.
ERROR_BODY_EXCERPT = 1024
# Parsed request URLs kept for reuse (calls repeat the same few URLs); emptied when full.
URL_CACHE_SIZE = 512

# --- Event streams (server-sent events) ----------------------------------------------

# Server-sent events: the server sends a keepalive comment every ~15 s.
DEFAULT_SSE_IDLE_TIMEOUT = 90.0
# Defaults of ``events.stream()``, which reconnects unless ``reconnect=False``.
DEFAULT_MAX_RECONNECTS = 8
DEFAULT_RECONNECT_TIMEOUT = 120.0
DEFAULT_RECONNECT_DELAY = 0.5
MAX_RECONNECT_DELAY = 30.0
# Ids of this many recent events are remembered to drop what a resumed stream re-sends.
SEEN_IDS = 1024
# The most recent gaps a stream keeps in ``gaps``.
KEPT_GAPS = 100

# --- Waits and lifecycle transitions -------------------------------------------------

# ``capsules.wait()`` polls this often, and gives up after this long by default.
WAIT_POLL_INTERVAL = 0.5
DEFAULT_WAIT_TIMEOUT = 60.0
# How long connecting to a capsule that is not running yet (and ``wait_ready``) waits
# for it to run: as long as a create's read budget, a VM boot.
CAPSULE_READY_TIMEOUT = CREATE_READ_TIMEOUT

# API 0.2.2: lifecycle calls answer 202 and the capsule settles later. How long a call
# that waits for its transition (the default) waits before WrennTimeoutError.
DEFAULT_TRANSITION_TIMEOUT = 300.0
# A snapshot writes memory and disk: it may take longer than the other transitions.
SNAPSHOT_TRANSITION_TIMEOUT = 600.0
# After a capsule leaves ``snapshotting``, how long its template may take to be listed.
SNAPSHOT_TEMPLATE_GRACE = 10.0
# Cleaning up after a failed or cancelled wait (destroying what was created) is bounded.
ABANDON_TIMEOUT = 10.0

# The shared event feed that transition waits listen to.
# Silence on the event stream past this ends it (the platform sends a keepalive every 30 s).
FEED_IDLE_TIMEOUT = 75.0
# A stream opened this soon after the previous one was let go does not make every wait
# look again (it would cost one GET per wait per hand-over).
HANDOVER_GAP = 0.5
# After the stream failed for a passing reason, how long waits poll before trying again.
FEED_RETRY_DELAY = 30.0

# --- Leases (keeping a capsule from auto-pausing) ------------------------------------

# Pings come this many times per ``timeout_sec``, so one or two may fail in a row
# without the capsule pausing.
PINGS_PER_TIMEOUT = 3
# Never ping more often than this (seconds), however short the capsule's timeout.
LEASE_MIN_PING_INTERVAL = 1.0

# --- Commands ------------------------------------------------------------------------

# Seconds a foreground command may run when the caller gives no timeout (the official
# SDK's default).
DEFAULT_COMMAND_TIMEOUT = 30
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL for a command past its timeout
DEFAULT_OUTPUT_BUDGET = 16 * 1024 * 1024  # characters kept per stream (half head, half tail)

# Durable commands: output spooled to files in the capsule, read back by polling.
DEFAULT_SPOOL_BUDGET = 16 * 1024 * 1024  # bytes kept per stream
# Smallest budget a caller may ask for: a few segments of the 1 KiB minimum.
MIN_SPOOL_BUDGET = 4096
# Largest spool segment: a reader re-reads at most one segment to catch up.
MAX_SEGMENT = 256 * 1024
# Largest read of a spooler in the capsule: a segment overshoots its size by less.
DURABLE_READ_CHUNK = 65536
# Polls start fast (a short command is over in milliseconds) and slow down by
# POLL_GROWTH to the caller's poll interval while nothing new arrives.
FIRST_POLL_DELAY = 0.05
POLL_GROWTH = 1.5
DEFAULT_POLL_INTERVAL = 1.0
# While nothing changes, whether the command still runs is checked this often (seconds):
# a wrapper killed with SIGKILL (or a capsule restarted) records no exit status.
LIVENESS_EVERY = 5.0

# --- Files ---------------------------------------------------------------------------

# A file read may legitimately be much larger than any JSON answer.
FILE_READ_LIMIT = 1024 * 1024 * 1024
# A file transfer may move up to FILE_READ_LIMIT in one call: it gets a long read budget.
FILE_TRANSFER_READ_TIMEOUT = 300.0

# --- WebSockets (terminals, streamed commands) ---------------------------------------

# Pings keep an idle connection open through proxies; a dead peer is noticed within
# ping interval + ping timeout.
WS_PING_INTERVAL = 20.0
WS_PING_TIMEOUT = 20.0
WS_WRITE_TIMEOUT = 30.0
# Largest message accepted (a frame flood past it is a protocol error, not memory use).
WS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLOSE_REPLY_WAIT = 1.0  # how long a closing client waits for the server's close reply
# Bytes asked of the socket per read.
WS_READ_CHUNK = 65536

# --- Command line (``wrenn`` CLI) ----------------------------------------------------

CLI_STOP_GRACE = 2.0  # seconds a Ctrl-C'd command gets after SIGTERM before SIGKILL
CLI_SHELL_POLL = 0.2  # seconds between checks that the remote side is still there
CLI_UPLOAD_CHUNK = 256 * 1024  # bytes read from a local file per upload chunk

# --- Integrations --------------------------------------------------------------------

# Inspect AI: capsules at once per eval unless WRENN_INSPECT_MAX_SANDBOXES says otherwise.
INSPECT_MAX_SANDBOXES = 16
# Bounds on work done while cleaning up, so a dead server cannot hang an eval's exit.
INSPECT_CLEANUP_TIMEOUT = 60.0
INSPECT_KILL_TIMEOUT = 10.0
# Files bigger than this go up as a stream (the plain upload endpoint stops at 100 MiB).
INSPECT_STREAM_UPLOAD_OVER = 32 * 1024 * 1024
INSPECT_UPLOAD_CHUNK = 1024 * 1024  # bytes per piece of a streamed upload

# OpenAI Agents: a command the SDK runs without a timeout still gets one (the SDK's E2B
# client does too).
AGENTS_UNBOUNDED_EXEC_TIMEOUT = 24 * 3600.0
# Packing or unpacking a workspace as a tar may move a lot of data.
AGENTS_TAR_TIMEOUT = 600.0

# --- Code runner --------------------------------------------------------
# The least time a Jupyter call through a capsule's port proxy is given, even when the
# caller's deadline is (nearly) reached: a poll that wakes at its deadline still asks once.
JUPYTER_MIN_CALL_TIME = 0.1
# How often kernel discovery asks again while the Jupyter server is not up yet.
KERNEL_POLL_INTERVAL = 0.5
# Largest Jupyter REST answer read (kernel lists, a started kernel): they are small, and
# they come from inside the capsule.
JUPYTER_MAX_BODY = 1024 * 1024
# After a timeout the kernel is interrupted; its remaining output is drained for
# at most this long, so the next cell does not queue behind the interrupted one.
INTERRUPT_GRACE = 5.0
# Once the kernel is idle after a cell, how long its answer on the shell channel may lag.
REPLY_GRACE = 2.0
# How long a check of a kept kernel connection waits for bytes already on their way.
KERNEL_SOCKET_PEEK = 0.0005
