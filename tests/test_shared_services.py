"""Runs that share a Redis never meet: this run's keys, counters and channel groups are named under
its own ``REDIS_KEY_PREFIX`` (``make test`` sets one per run), and clearing them between tests
leaves everyone else's alone."""

import os
import uuid

import pytest
import redis
from django.conf import settings
from django.core.cache import cache

from core.api import throttling
from tests.conftest import clear_our_cache

NEEDS_REDIS = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL; CI has it)")


@NEEDS_REDIS
def test_clearing_between_tests_forgets_this_runs_keys_and_no_one_elses() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    theirs = f"another-run-{uuid.uuid4().hex}:1:throttle"
    client.set(theirs, 7, ex=60)
    try:
        cache.set("ours", 1)
        throttling.hit("login:127.0.0.1", 60)
        assert cache.get("ours") == 1 and throttling.count_of("login:127.0.0.1") == 1
        assert all(key.decode().startswith(f"{settings.REDIS_KEY_PREFIX}:") for key in client.keys("*ours*"))
        clear_our_cache()
        assert cache.get("ours") is None and throttling.count_of("login:127.0.0.1") == 0
        assert client.get(theirs) == b"7"
    finally:
        client.delete(theirs)
        client.close()


@NEEDS_REDIS
def test_the_channel_layer_and_the_cache_use_the_runs_prefix() -> None:
    assert settings.CACHES["default"]["KEY_PREFIX"] == settings.REDIS_KEY_PREFIX
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] == settings.REDIS_KEY_PREFIX
    assert settings.REDIS_KEY_PREFIX != "gpumarket"  # the deployments' default is not a test run's


def test_no_test_flushes_what_other_runs_keep() -> None:
    """``cache.clear()`` on Redis flushes the whole database, other runs' keys with it: the suite
    clears through ``clear_our_cache`` (its own prefix) instead."""
    from pathlib import Path

    root = Path(__file__).resolve().parent
    flushing = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if path.name != "conftest.py" and path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "cache.clear()" in line or "flushdb" in line.lower() or "flushall" in line.lower()
    ]
    assert flushing == []
