"""A bounded HTTP client load, run inside the lab's client namespace (stdlib only).

    python3 -m lab.kit.load URL --seconds S [--max-requests N] [--keepalive] [--workers W]

Sends requests until SIGTERM, the time limit or the request cap, whichever comes first, then
prints one JSON line: (after `{"event": "started"}` and `{"event": "progress", ...}` lines as
requests complete) totals, failures, and the outages seen (first failure to first success).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import ssl
import threading
import time
from urllib.parse import urlsplit


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        # Requests sent again on a new connection because the server closed a kept-alive one
        # before any byte of the answer, as HTTP clients do for a GET (RFC 9110, 9.2.2).
        self.retried = 0
        self.outages: list[float] = []
        self._down_since: float | None = None

    def record(self, sent: float, success: bool, error: str = "") -> None:
        """`sent`: when the request started. An outage runs from the start of the first failed
        request to the start of the next request that succeeds (a request that hangs until its
        timeout counts from when it was sent, not when it gave up)."""
        with self.lock:
            if success:
                self.ok += 1
                if self._down_since is not None and sent > self._down_since:
                    self.outages.append(sent - self._down_since)
                    self._down_since = None
            else:
                self.failed += 1
                self.errors[error] = self.errors.get(error, 0) + 1
                if self._down_since is None or sent < self._down_since:
                    self._down_since = sent


def connect(url: str, timeout: float, cafile: str | None) -> http.client.HTTPConnection:
    """A connection for http:// or https:// (verified against `cafile`)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        return http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def worker(url: str, keepalive: bool, stop: threading.Event, stats: Stats, budget: list[int], timeout: float,
           interval: float, cafile: str | None = None) -> None:
    parts = urlsplit(url)
    conn: http.client.HTTPConnection | None = None
    while not stop.is_set():
        with stats.lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        sent = time.monotonic()
        for attempt in (1, 2):
            reused = conn is not None
            try:
                if conn is None:
                    conn = connect(url, timeout, cafile)
                conn.request("GET", parts.path or "/", headers={} if keepalive else {"Connection": "close"})
                response = conn.getresponse()
                response.read()
                stats.record(sent, response.status == 200, f"HTTP {response.status}")
                if not keepalive or response.will_close:
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                closed_idle = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if reused and closed_idle and attempt == 1:
                    with stats.lock:
                        stats.retried += 1
                    continue
                stats.record(sent, False, type(exc).__name__)
                break
        if interval:
            time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--keepalive", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.0, help="pause between a worker's requests")
    parser.add_argument("--cafile", default=None, help="CA to verify https:// against")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stats, budget = Stats(), [args.max_requests]
    threads = [
        threading.Thread(target=worker, args=(args.url, args.keepalive, stop, stats, budget, args.timeout,
                                              args.interval, args.cafile), daemon=True)
        for _ in range(args.workers)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    print(json.dumps({"event": "started"}), flush=True)
    said = (0, 0)
    while not stop.is_set() and time.monotonic() - started < args.seconds and any(t.is_alive() for t in threads):
        stop.wait(0.05)
        # Progress, for a test that waits for clients to be served (never for a fixed time).
        if (stats.ok, stats.failed) != said:
            said = (stats.ok, stats.failed)
            print(json.dumps({"event": "progress", "ok": said[0], "failed": said[1]}), flush=True)
    stop.set()
    for t in threads:
        t.join(timeout=args.timeout + 1)
    print(json.dumps({
        "total": stats.ok + stats.failed, "ok": stats.ok, "failed": stats.failed, "errors": stats.errors,
        "retried": stats.retried,
        "outages": [round(o, 3) for o in stats.outages], "seconds": round(time.monotonic() - started, 2),
    }), flush=True)


if __name__ == "__main__":
    main()
