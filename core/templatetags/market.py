"""Template filters for the web UI: money, per GPU-hour, times in the reader's time zone."""

from datetime import datetime

from django import template
from django.utils.html import format_html

from core.money import format_usd, format_usd_short

register = template.Library()


@register.filter
def usd(amount: int | None) -> str:
    """Exact micro-dollars as dollars ($1.234567): balances, ledger lines, statements."""
    return "—" if amount is None else format_usd(int(amount))


@register.filter
def usd_short(amount: int | None) -> str:
    """Rounded to the cent ($1.23): prices and estimates."""
    return "—" if amount is None else format_usd_short(int(amount))


@register.filter
def times(amount: int | None, factor: int | None) -> int | None:
    """An amount times a whole number (a price per hour times the hours: the deposit)."""
    return None if amount is None or factor is None else int(amount) * int(factor)


@register.filter
def per_gpu_hour(price_per_hour: int | None, gpu_count: int | None) -> str:
    """A price for the whole order as dollars per GPU-hour."""
    if price_per_hour is None or not gpu_count:
        return "—"
    return format_usd_short(int(price_per_hour) // int(gpu_count))


@register.filter
def when(moment: datetime | None) -> str:
    """A ``<time>`` in UTC that the page's script shows in the reader's time zone."""
    if moment is None:
        return "—"
    return format_html(
        '<time datetime="{}" data-local>{}</time>', moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M UTC")
    )


@register.filter
def hours(seconds: int | float | None) -> str:
    """Seconds as "2 h 05 min" (or "45 s")."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    h, m = divmod(seconds // 60, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


@register.filter
def cents_usd(cents: int | None) -> str:
    """US cents (Stripe's unit) as dollars."""
    return "—" if cents is None else format_usd_short(int(cents) * 10_000)
