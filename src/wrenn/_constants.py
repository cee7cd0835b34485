"""Every tunable default of the SDK, in one place."""

from __future__ import annotations

import httpx

ENV_API_KEY = "WRENN_API_KEY"
ENV_BASE_URL = "WRENN_BASE_URL"
ENV_PROXY_DOMAIN = "WRENN_PROXY_DOMAIN"
ENV_LOG = "WRENN_LOG"

DEFAULT_BASE_URL = "https://app.wrenn.dev/api"
DEFAULT_PROXY_DOMAIN = "wrenn.dev"
DEFAULT_PROXY_BASE_HOST = "app.wrenn.dev"

# Per-phase timeouts of one HTTP attempt. The read timeout is per chunk, so a
# server that drips bytes never trips it: the per-call deadline below covers that.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0, write=30.0, pool=10.0)
# Wall-clock budget of one call, retries and backoff included.
DEFAULT_TOTAL_TIMEOUT = 120.0

# Server-side work that legitimately takes long gets a longer read budget.
CREATE_READ_TIMEOUT = 120.0  # a synchronous VM boot on the platform
PAUSE_RESUME_READ_TIMEOUT = 120.0  # memory snapshot / restore
SNAPSHOT_READ_TIMEOUT = 300.0  # the server allows a detached 5-minute RPC
EXEC_MARGIN = 15.0  # HTTP read budget of a foreground exec beyond its timeout_sec

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

DEFAULT_MAX_CONNECTIONS = 20
DEFAULT_MAX_KEEPALIVE = 20
DEFAULT_KEEPALIVE_EXPIRY = 30.0
DEFAULT_LIMITS = httpx.Limits(
    max_connections=DEFAULT_MAX_CONNECTIONS,
    max_keepalive_connections=DEFAULT_MAX_KEEPALIVE,
    keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY,
)

# Largest JSON body we buffer and decode; past it a typed error is raised.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# Longest excerpt of a response body kept in an exception.
ERROR_BODY_EXCERPT = 1024

# Server-sent events: the server sends a keepalive comment every ~15 s.
DEFAULT_SSE_IDLE_TIMEOUT = 90.0

WAIT_POLL_INTERVAL = 0.5
DEFAULT_WAIT_TIMEOUT = 60.0

# API 0.2.2: lifecycle calls answer 202 and the capsule settles later. How long a call
# that waits for its transition (the default) waits before WrennTimeoutError.
DEFAULT_TRANSITION_TIMEOUT = 300.0
# A snapshot writes memory and disk: it may take longer than the other transitions.
SNAPSHOT_TRANSITION_TIMEOUT = 600.0
# After a capsule leaves ``snapshotting``, how long its template may take to be listed.
SNAPSHOT_TEMPLATE_GRACE = 10.0
# Cleaning up after a failed or cancelled wait (destroying what was created) is bounded.
ABANDON_TIMEOUT = 10.0

# --- code runner
# The least time a Jupyter call through a capsule's port proxy is given, even when the
# caller's deadline is (nearly) reached: a poll that wakes at its deadline still asks once.
JUPYTER_MIN_CALL_TIME = 0.1
