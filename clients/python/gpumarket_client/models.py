"""What the API answers, as typed objects. Amounts are integer micro-dollars (1 USD = 1,000,000),
as the API counts them; ``usd()`` writes one for people. Each object keeps the whole answer in
``raw`` (fields a newer server adds are there too)."""

from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

T = TypeVar("T")
MICROS = 1_000_000


def micros(dollars: str) -> int | None:
    """``"2.50"`` or ``"$2.50"`` → ``2_500_000``; None when it is not an amount."""
    try:
        amount = Decimal(dollars.strip().lstrip("$"))
    except InvalidOperation:
        return None
    return int(amount * MICROS) if amount.is_finite() else None


def usd(micros: int | None) -> str:
    """``2_500_000`` → ``$2.50``."""
    if micros is None:
        return "-"
    sign = "-" if micros < 0 else ""
    cents = (abs(micros) + 5_000) // 10_000
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


class _Model:
    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """The object from the API's answer: the fields it knows, the whole answer in ``raw``."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known}, raw=data)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Offer(_Model):
    provider: dict[str, Any]
    gpu_model: dict[str, Any]
    available: int
    price_per_gpu_hour: int | None
    verified: bool = False
    total: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Bid(_Model):
    id: int
    order: int
    price_per_hour: int
    price_per_gpu_hour: int = 0
    provider: dict[str, Any] = field(default_factory=dict)
    gpu_model: dict[str, Any] | str = ""
    gpu_verified: bool = False
    status: str = "open"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def provider_name(self) -> str:
        return str(self.provider.get("name", "")) if isinstance(self.provider, dict) else str(self.provider)


@dataclass(frozen=True)
class Order(_Model):
    id: int
    status: str
    name: str = ""
    deadline: str = ""
    max_price_per_hour: int = 0
    duration_hours: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    workload_file: dict[str, Any] = field(default_factory=dict)
    lease: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Lease(_Model):
    id: int
    status: str
    order: int = 0
    provider: dict[str, Any] = field(default_factory=dict)
    gpu_model: dict[str, Any] | str = ""
    gpu_count: int = 0
    price_per_hour: int = 0
    deposit: int = 0
    accrued: int = 0
    remaining_deposit: int = 0
    started_at: str | None = None
    ends_at: str | None = None
    closed_at: str | None = None
    close_reason: str = ""
    endpoints: list[str] = field(default_factory=list)
    paid_to_provider: int = 0
    refunded_to_client: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LeaseLog(_Model):
    text: str
    updated_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
