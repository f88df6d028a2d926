"""Runs sharing a machine never share state: each `make test` run has its own test databases (and
each of its workers its own), as it has its own Redis keys (``REDIS_KEY_PREFIX``)."""

import os

import pytest
from django.conf import settings
from django.db import connection


@pytest.mark.django_db
def test_the_test_database_is_this_runs_and_this_workers_own() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's test database is in this process's memory: nobody else's")
    run = os.environ.get("TEST_RUN")
    if not run:
        pytest.skip("make test names its run (TEST_RUN); a bare pytest run keeps Django's names")
    name = connection.settings_dict["NAME"]
    assert name.endswith(f"_run{run}"), name
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    assert (f"_{worker}_" in name) if worker else ("_gw" not in name), name
    assert settings.REDIS_KEY_PREFIX.startswith("gpumarket-test-")
