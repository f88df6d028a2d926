"""Usage reports: measured per lease, signed, and kept on disk until the marketplace has them.

The meter remembers, per lease, where its last report ended (``<state>/usage/<lease>.json``);
each report covers the time since then. A signed report goes to the outbox
(``<state>/outbox/``, one file each, written atomically) before the meter moves on, and leaves it
only when the marketplace accepted it, or refused it for good (then it is kept in
``<state>/rejected/`` with the reason, for the provider to look at). Reports go out in batches
(``POST /api/v1/usage-reports/``), each taken or refused on its own. If the marketplace is down,
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

from agent.client import MarketplaceClient, MarketplaceError
from agent.runtimes.base import Runtime, RuntimeError_, RuntimeUnavailable
from protocol.usage import UsageReport, sign

logger = logging.getLogger("gpumarket.agent")
RETRYABLE = {408, 425, 429}
FLUSH_BATCH = 200  # reports a request


def _refused_for_good(status: int | None) -> bool:
    """A 4xx other than "try again later": sending the same again cannot succeed."""
    return status is not None and 400 <= status < 500 and status not in RETRYABLE


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

    def flush(self, client: MarketplaceClient, *, batch: int = FLUSH_BATCH) -> FlushSummary:
        """Send what waits, oldest first, ``batch`` reports a request; stop at the first transient
        failure to keep the order."""
        summary = FlushSummary()
        entries: list[tuple[Path, int, dict]] = []
        for path in self.pending():
            try:
                entry = json.loads(path.read_text())
                entries.append((path, int(entry["lease"]), dict(entry["body"])))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._reject(path, f"unreadable: {exc}")
                summary.rejected += 1
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            try:
                answer = client.report_usage_batch([{"lease": lease_id, **body} for _, lease_id, body in chunk])
                results = list(answer["results"])
            except MarketplaceError as exc:
                if not _refused_for_good(exc.status):
                    summary.waiting, summary.error = len(entries) - start, str(exc)
                    return summary
                # the request as a whole was refused: one at a time finds the report at fault
                if not self._flush_one_by_one(client, chunk, summary):
                    summary.waiting += len(entries) - start - len(chunk)
                    return summary
                continue
            except (KeyError, TypeError) as exc:
                summary.waiting, summary.error = len(entries) - start, f"unexpected answer: {exc}"
                return summary
            for (path, _, _), result in zip(chunk, results, strict=False):
                error = result.get("error") or {}
                if result.get("result") in ("created", "duplicate"):
                    path.unlink()
                    summary.sent += 1
                elif _refused_for_good(error.get("status")):
                    self._reject(path, f"{error.get('status')} {error.get('code', '')}: {error.get('message', '')}")
                    summary.rejected += 1
                else:
                    summary.waiting += 1
                    summary.error = str(error.get("message") or "no result")
        return summary

    def _flush_one_by_one(
        self, client: MarketplaceClient, chunk: list[tuple[Path, int, dict]], summary: FlushSummary
    ) -> bool:
        """Send ``chunk`` report by report; False (with ``summary.waiting`` set) at a transient failure."""
        for index, (path, lease_id, body) in enumerate(chunk):
            try:
                client.report_usage(lease_id, body)
            except MarketplaceError as exc:
                if _refused_for_good(exc.status):
                    self._reject(path, f"{exc.status} {exc.code}: {exc}")
                    summary.rejected += 1
                    continue
                summary.waiting, summary.error = len(chunk) - index, str(exc)
                return False
            path.unlink()
            summary.sent += 1
        return True

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
        body = report.body(sign(report, chain_id=self.chain_id, key=self.key))
        try:  # a picture for the client beside the signed report: never what decides it
            metrics = self.runtime.gpu_metrics(lease_id)
        except (RuntimeError_, RuntimeUnavailable, OSError):
            metrics = None
        if metrics is not None:
            body |= {"gpu_utilization_pct": round(metrics.utilization_pct, 1), "gpu_memory_mib": metrics.memory_mib}
        self.outbox.put(lease_id, body)
        self._save(LeaseMeter(meter.lease, meter.gpu_count, end, max(used.restarts, meter.restarts_seen)))
        return report

    def finish(self, lease_id: int, *, end: int | None) -> UsageReport | None:
        """The final report of a closed lease (none when ``end`` is None); the meter is dropped."""
        report = self.record(lease_id, end=end) if end is not None else None
        self._cache.pop(lease_id, None)
        self._path(lease_id).unlink(missing_ok=True)
        return report
