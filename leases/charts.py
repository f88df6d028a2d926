"""A picture of what a lease used, drawn on the server as SVG (no script, nothing to vendor): the
cost so far as a line, the GPUs' utilisation as another (where the agent read it from NVML), and
how much of each usage period the workload ran as bars beneath them."""

from dataclasses import dataclass
from datetime import datetime

from core.money import format_usd_short


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class UsageChart:
    width: int
    height: int
    cost_line: str  # an SVG path
    utilization_line: str  # an SVG path over 0 to 100 %, "" where the agent read no GPU utilisation
    bars: list[Bar]
    total: str  # the cost at the last period's end, in dollars
    start: datetime
    end: datetime


def usage_chart(periods: list, *, width: int = 640, height: int = 160) -> UsageChart | None:
    """The chart of ``periods`` (a lease statement's: start, end, run seconds, amount), or None
    before the first usage report. The line's height is the cost so far against the total; a bar's
    is the share of its period the workload ran (full: it ran all along)."""
    if not periods:
        return None
    start, end = periods[0].period_start, periods[-1].period_end
    span = max((end - start).total_seconds(), 1.0)
    total = sum(p.amount for p in periods)
    top, bottom = 8.0, float(height - 4)

    def x(moment: datetime) -> float:
        return round((moment - start).total_seconds() / span * width, 1)

    def y(amount: int) -> float:
        return round(bottom - (amount / total * (bottom - top) if total else 0.0), 1)

    points, cumulative, bars = [f"M0 {bottom}"], 0, []
    busy: list[str] = []
    for period in periods:
        if period.gpu_utilization_pct is not None:
            height = round(bottom - period.gpu_utilization_pct / 100 * (bottom - top), 1)
            busy.append(f"{'L' if busy else 'M'}{x(period.period_end)} {height}")
        gpus = "" if period.gpu_utilization_pct is None else f", GPUs {period.gpu_utilization_pct:.0f} % busy"
        memory = "" if period.gpu_memory_mib is None else f", {period.gpu_memory_mib:,} MiB of GPU memory"
        cumulative += period.amount
        points.append(f"L{x(period.period_end)} {y(cumulative)}")
        length = max((period.period_end - period.period_start).total_seconds(), 1.0)
        share = min(period.run_seconds / length, 1.0)
        left, right = x(period.period_start), x(period.period_end)
        bar_height = round(share * (bottom - top) * 0.35, 1)
        bars.append(
            Bar(
                x=left,
                y=round(bottom - bar_height, 1),
                width=max(round(right - left - 1, 1), 1.0),
                height=bar_height,
                title=f"{period.period_start:%H:%M:%S}–{period.period_end:%H:%M:%S} UTC: ran {period.run_seconds} s "
                f"of {int(length)} s, {format_usd_short(period.amount)}{gpus}{memory}",
            )
        )
    return UsageChart(
        width=width,
        height=height,
        cost_line=" ".join(points),
        utilization_line=" ".join(busy),
        bars=bars,
        total=format_usd_short(total),
        start=start,
        end=end,
    )
