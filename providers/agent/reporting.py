"""Usage reports: measured per lease, signed, and kept on disk until the marketplace has them.

The meter remembers, per lease, where its last report ended (``<state>/usage/<lease>.json``);
each report covers the time since then. A signed report goes to the outbox
(``<state>/outbox/``, one file each, written atomically) before the meter moves on, and leaves it
only when the marketplace accepted it, or refused it for good (then it is kept in
``<state>/rejected/`` with the reason, for the provider to look at). If the marketplace is down,
reports wait, in order, and nothing is lost; running leases keep running meanwhile.
"""

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from providers.agent.client import MarketplaceClient, MarketplaceError
from providers.agent.runtimes.base import Runtime
from providers.agent.usage import UsageReport, sign

logger = logging.getLogger("gpumarket.agent")
RETRYABLE = {408, 425, 429}


def _write_atomically(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class FlushSummary:
    sent: int = 0
    rejected: int = 0
    waiting: int = 0
    error: str = ""


class Outbox:
    def __init__(self, state_dir: str | Path) -> None:
        self.directory = Path(state_dir) / "outbox"
        self.rejected_dir = Path(state_dir) / "rejected"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)

    def put(self, lease_id: int, body: dict) -> Path:
        path = self.directory / f"{time.time_ns():020d}-lease-{lease_id}-{body['period_start']}.json"
        _write_atomically(path, {"lease": lease_id, "body": body})
        return path

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.json"))

    def flush(self, client: MarketplaceClient) -> FlushSummary:
        """Send what waits, oldest first; stop at the first transient failure to keep the order."""
        summary = FlushSummary()
        pending = self.pending()
        for index, path in enumerate(pending):
            try:
                entry = json.loads(path.read_text())
                lease_id, body = int(entry["lease"]), dict(entry["body"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._reject(path, f"unreadable: {exc}")
                summary.rejected += 1
                continue
            try:
                client.report_usage(lease_id, body)
            except MarketplaceError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status not in RETRYABLE:
                    self._reject(path, f"{exc.status} {exc.code}: {exc}")
                    summary.rejected += 1
                    continue
                summary.waiting = len(pending) - index
                summary.error = str(exc)
                return summary
            path.unlink()
            summary.sent += 1
        return summary

    def _reject(self, path: Path, reason: str) -> None:
        logger.warning("usage report refused", extra={"fields": {"file": path.name, "reason": reason}})
        with contextlib.suppress(OSError):
            (self.rejected_dir / f"{path.stem}.reason.txt").write_text(reason + "\n")
            os.replace(path, self.rejected_dir / path.name)


@dataclass
class LeaseMeter:
    lease: int
    gpu_count: int
    last_end: int
    restarts_seen: int = 0


@dataclass
class UsageMeter:
    state_dir: str | Path
    runtime: Runtime
    outbox: Outbox
    key: str
    chain_id: int
    interval: int = 60
    _cache: dict[int, LeaseMeter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = Path(self.state_dir) / "usage"
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, lease_id: int) -> Path:
        return self.directory / f"{lease_id}.json"

    def meter(self, lease_id: int) -> LeaseMeter | None:
        if lease_id not in self._cache:
            try:
                self._cache[lease_id] = LeaseMeter(**json.loads(self._path(lease_id).read_text()))
            except (OSError, ValueError, TypeError):
                return None
        return self._cache[lease_id]

    def known(self) -> list[int]:
        """Leases with a meter on disk."""
        return sorted(int(path.stem) for path in self.directory.glob("*.json") if path.stem.isdigit())

    def start(self, lease: dict) -> LeaseMeter:
        """The meter of a lease, begun at the lease's start the first time it is seen."""
        lease_id = int(lease["id"])
        existing = self.meter(lease_id)
        if existing is not None:
            return existing
        started = math.ceil(datetime.fromisoformat(str(lease["started_at"])).timestamp())
        meter = LeaseMeter(lease=lease_id, gpu_count=int(lease["gpu_count"]), last_end=started)
        self._save(meter)
        return meter

    def _save(self, meter: LeaseMeter) -> None:
        _write_atomically(self._path(meter.lease), meter.__dict__)
        self._cache[meter.lease] = meter

    def due(self, lease_id: int, now: float) -> bool:
        meter = self.meter(lease_id)
        return meter is not None and now - meter.last_end >= self.interval

    def record(self, lease_id: int, *, end: int) -> UsageReport | None:
        """Measure, sign and queue the report from the last one's end to ``end``."""
        meter = self.meter(lease_id)
        if meter is None or end <= meter.last_end:
            return None
        used = self.runtime.usage(lease_id, start=meter.last_end, end=end)
        run_seconds = min(used.run_seconds, end - meter.last_end)
        report = UsageReport(
            lease=lease_id,
            period_start=meter.last_end,
            period_end=end,
            gpu_seconds=run_seconds * meter.gpu_count,
            run_seconds=run_seconds,
            restarts=max(0, used.restarts - meter.restarts_seen),
        )
        self.outbox.put(lease_id, report.body(sign(report, chain_id=self.chain_id, key=self.key)))
        self._save(LeaseMeter(meter.lease, meter.gpu_count, end, max(used.restarts, meter.restarts_seen)))
        return report

    def finish(self, lease_id: int, *, end: int | None) -> UsageReport | None:
        """The final report of a closed lease (none when ``end`` is None); the meter is dropped."""
        report = self.record(lease_id, end=end) if end is not None else None
        self._cache.pop(lease_id, None)
        self._path(lease_id).unlink(missing_ok=True)
        return report
