"""Money as people read it. Amounts are integer micro-dollars everywhere (see DESIGN.md)."""


def format_usd(amount: int) -> str:
    """Micro-dollars as dollars: 1_500_000 -> "$1.50", 1_234_567 -> "$1.234567"."""
    sign = "-" if amount < 0 else ""
    dollars, micros = divmod(abs(amount), 1_000_000)
    fraction = f"{micros:06d}"
    fraction = fraction[:2] if fraction[2:] == "0000" else fraction.rstrip("0")
    return f"{sign}${dollars:,}.{fraction}"


def format_usd_short(amount: int) -> str:
    """Rounded to the cent, for prices and totals on pages: 1_234_567 -> "$1.23"."""
    cents = (abs(amount) + 5_000) // 10_000
    sign = "-" if amount < 0 and cents else ""
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


def usd_decimal(amount: int) -> str:
    """Exact micro-dollars as a plain dollar number for spreadsheets: 1_500_000 -> "1.50",
    1_234_567 -> "1.234567", -500_000 -> "-0.50" (no sign of currency, no thousands separator)."""
    return format_usd(amount).replace("$", "").replace(",", "")
