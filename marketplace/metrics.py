"""Prometheus metrics at ``/metrics``: django-prometheus's request, cache and migration metrics, and
the market's own, read from the database at each scrape (so every process reports the same):

- ``gpumarket_orders_open``: open orders;
- ``gpumarket_bids_total``: bids ever placed (``rate()`` of it: bids per second);
- ``gpumarket_award_latency_seconds{quantile}``: from an order's deadline to its award, over the
  orders awarded at their deadline in the last 15 minutes (with ``_count``);
- ``gpumarket_leases_running``: running leases;
- ``gpumarket_settlement_lag_seconds``: the longest a running lease has gone unsettled;
- ``gpumarket_agents_online``: providers whose agent was heard from lately;
- ``gpumarket_gpu_checks_total{result}``: proof-of-GPU checks passed and failed (verification failures).

With gunicorn's several workers, set ``PROMETHEUS_MULTIPROC_DIR`` (the chart does) so the request
metrics of every worker are summed.
"""

import math
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from marketplace.selectors import market_numbers

QUANTILES = (0.5, 0.95, 0.99)


class MarketCollector:
    def collect(self) -> Iterator[Metric]:
        numbers = market_numbers()
        yield GaugeMetricFamily("gpumarket_orders_open", "Open orders.", value=numbers.orders_open)
        yield CounterMetricFamily("gpumarket_bids", "Bids placed.", value=numbers.bids_total)
        latency = GaugeMetricFamily(
            "gpumarket_award_latency_seconds",
            "From an order's deadline to its award (orders awarded at their deadline, last 15 minutes).",
            labels=["quantile"],
        )
        values = numbers.award_latencies  # sorted
        for q in QUANTILES if values else ():
            latency.add_metric([str(q)], values[max(0, math.ceil(q * len(values)) - 1)])  # nearest rank
        yield latency
        yield GaugeMetricFamily(
            "gpumarket_award_latency_seconds_count", "Orders in the award latency window.", value=len(values)
        )
        yield GaugeMetricFamily("gpumarket_leases_running", "Running leases.", value=numbers.leases_running)
        yield GaugeMetricFamily(
            "gpumarket_settlement_lag_seconds",
            "The longest a running lease has gone without a settlement.",
            value=numbers.settlement_lag_seconds,
        )
        yield GaugeMetricFamily(
            "gpumarket_agents_online", "Providers whose agent was heard from lately.", value=numbers.agents_online
        )
        checks = CounterMetricFamily("gpumarket_gpu_checks", "Finished proof-of-GPU checks.", labels=["result"])
        checks.add_metric(["passed"], numbers.checks_passed_total)
        checks.add_metric(["failed"], numbers.checks_failed_total)
        yield checks


def metrics(request: HttpRequest) -> HttpResponse:
    if settings.METRICS_TOKEN:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not constant_time_compare(given, settings.METRICS_TOKEN):
            return HttpResponse("Unauthorized.\n", status=401, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        requests = generate_latest(processes)
    else:
        requests = generate_latest(REGISTRY)
    market = CollectorRegistry(auto_describe=False)
    market.register(MarketCollector())
    return HttpResponse(requests + generate_latest(market), content_type=CONTENT_TYPE_LATEST)
