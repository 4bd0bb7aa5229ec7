"""Fault injection for the emulator: per-request header or standing rules set through ``POST /_control``.

A fault spec is ``KIND[;retry-after=N][;delay=SECONDS]``, for example ``429;retry-after=7``.
Kinds: an HTTP status (``400``, ``401``, ``429``, ``500``, ``503``, ``529``, ...; a 429 carries a
retry delay only when ``retry-after`` is given), ``timeout`` (sleep before answering),
``slow-first-byte`` (send the 200 headers, then sleep before the first byte), ``error-mid-stream``
(a provider error event after two chunks), ``drop-mid-stream`` (cut the connection after two chunks) and
``job-fails`` (a video job that is accepted, then ends ``failed``).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

FAULT_HEADER = "x-emulator-fault"
KINDS = ("timeout", "slow-first-byte", "error-mid-stream", "drop-mid-stream", "job-fails")
DEFAULT_DELAY = 30.0
#: Seconds an emulated video job runs before it completes (``POST /_control {"video_delay": 0.2}``).
VIDEO_DELAY = 0.5
#: Video jobs and ``url`` images kept per emulator (oldest dropped first).
MAX_KEPT = 1000


@dataclass(frozen=True, slots=True)
class Job:
    """An emulated video job; ``fails`` when it was submitted with the ``job-fails`` fault."""

    id: str
    model: str
    prompt: str
    seconds: str
    created_at: int
    started: float
    fails: bool = False


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request. ``status`` is set for HTTP error faults."""

    kind: str
    status: int | None = None
    retry_after: int | None = None
    delay: float = DEFAULT_DELAY


@dataclass(slots=True)
class Rule:
    """A standing fault for requests matching ``endpoint`` / ``model`` (``None`` matches any); ``times`` counts down."""

    fault: str
    endpoint: str | None = None
    model: str | None = None
    retry_after: int | None = None
    delay: float | None = None
    times: int | None = None


def parse_fault(spec: str, retry_after: int | None = None, delay: float | None = None) -> Fault:
    """Parse ``"429;retry-after=7"`` and friends; raises ``ValueError`` with the accepted forms."""
    head, *options = [p.strip() for p in spec.split(";")]
    for option in options:
        name, _, value = option.partition("=")
        if name.strip().lower() == "retry-after":
            retry_after = int(value)
        elif name.strip().lower() == "delay":
            delay = float(value)
        else:
            raise ValueError(f"unknown fault option {option!r}; use retry-after=N or delay=SECONDS")
    head = head.lower()
    if head.isdigit() and 400 <= int(head) <= 599:
        return Fault("status", int(head), retry_after, DEFAULT_DELAY if delay is None else delay)
    if head in KINDS:
        return Fault(head, None, retry_after, DEFAULT_DELAY if delay is None else delay)
    raise ValueError(f"unknown fault {spec!r}; use an HTTP status 400-599 or one of {', '.join(KINDS)}")


class EmulatorState:
    """Standing fault rules and request counters, shared by every request of one emulator app (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[Rule] = []
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.video_delay = VIDEO_DELAY
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, bytes] = {}

    def keep_job(self, job: Job) -> None:
        with self._lock:
            _bounded(self.jobs)[job.id] = job

    def keep_file(self, content: bytes, suffix: str) -> str:
        name = f"{uuid.uuid4().hex}{suffix}"
        with self._lock:
            _bounded(self.files)[name] = content
        return name

    def add_rule(self, raw: Mapping[str, Any]) -> Rule:
        rule = Rule(
            fault=str(raw.get("fault", "")),
            endpoint=raw.get("endpoint"),
            model=raw.get("model"),
            retry_after=raw.get("retry_after"),
            delay=raw.get("delay"),
            times=raw.get("times"),
        )
        parse_fault(rule.fault, rule.retry_after, rule.delay)  # validate now, not at request time
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.video_delay = VIDEO_DELAY

    def record(self, endpoint: str, api: str, model: str) -> None:
        with self._lock:
            self.requests[(endpoint, api, model)] += 1

    def fault_for(self, header: str | None, endpoint: str, model: str) -> Fault | None:
        """The request header wins; else the first matching standing rule (consuming one of its ``times``)."""
        if header:
            return parse_fault(header)
        with self._lock:
            for rule in self.rules:
                if rule.endpoint not in (None, endpoint) or rule.model not in (None, model):
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                return parse_fault(rule.fault, rule.retry_after, rule.delay)
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "video_delay": self.video_delay,
                "rules": [asdict(r) for r in self.rules],
                "requests": [
                    {"endpoint": e, "api": a, "model": m, "count": n} for (e, a, m), n in sorted(self.requests.items())
                ],
            }


def _bounded(store: dict[str, Any]) -> dict[str, Any]:
    while len(store) >= MAX_KEPT:
        del store[next(iter(store))]
    return store
