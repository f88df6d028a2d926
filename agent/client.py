"""The marketplace's REST API, as the agent uses it."""

import time
from typing import Any

import requests


class MarketplaceError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


class MarketplaceClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries = timeout, retries
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": "gpumarket-agent"})

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self.session.request(method, f"{self.base_url}{path}", json=body, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt == self.retries:
                    raise MarketplaceError(f"marketplace unreachable: {exc}") from exc
                time.sleep(min(2**attempt, 30))
                continue
            if response.status_code >= 500 and attempt < self.retries:
                time.sleep(min(2**attempt, 30))
                continue
            if response.status_code == 204:
                return None
            try:
                data = response.json()
            except ValueError as exc:
                raise MarketplaceError(
                    f"unexpected answer ({response.status_code})", status=response.status_code
                ) from exc
            if response.status_code >= 400:
                error = data.get("error", {}) if isinstance(data, dict) else {}
                raise MarketplaceError(
                    error.get("message") or f"HTTP {response.status_code}",
                    status=response.status_code,
                    code=error.get("code", ""),
                )
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    def me(self) -> dict:
        return self._call("GET", "/api/v1/providers/me/")

    def report_inventory(self, report: dict) -> dict:
        """Send what the agent discovered; the marketplace counts it as a heartbeat."""
        return self._call("PUT", "/api/v1/providers/me/inventory/", report)

    def heartbeat(self) -> None:
        self._call("POST", "/api/v1/providers/me/heartbeat/")

    def provider_orders(self) -> list[dict]:
        """Open orders this provider can serve now."""
        return self._call("GET", "/api/v1/provider/orders/?limit=500")["results"]

    def place_bid(self, order_id: int, *, price_per_hour: int, gpu_model: str | None = None) -> dict:
        body: dict = {"price_per_hour": price_per_hour}
        if gpu_model:
            body["gpu_model"] = gpu_model
        return self._call("POST", f"/api/v1/orders/{order_id}/bids/", body)

    def _in_states(self, path: str, statuses: list[str]) -> list[dict]:
        query = "&".join(f"status={s}" for s in statuses)
        return self._call("GET", f"{path}?{query}&limit=500")["results"]

    def bids(self, statuses: list[str]) -> list[dict]:
        """This provider's bids in these states."""
        return self._in_states("/api/v1/bids/", statuses)

    def leases(self, statuses: list[str]) -> list[dict]:
        return self._in_states("/api/v1/leases/", statuses)

    def manifest(self, lease_id: int) -> dict:
        return self._call("GET", f"/api/v1/leases/{lease_id}/manifest/")

    def report_status(
        self, lease_id: int, status: str, *, endpoints: list[str] | None = None, reason: str = "", cause: str = ""
    ) -> dict:
        """``cause`` (of a failure): ``workload`` when the client's image or command failed,
        ``provider`` (the default) when the host, its runtime or its network did."""
        body: dict = {"status": status}
        if endpoints is not None:
            body["endpoints"] = endpoints
        if reason:
            body["reason"] = reason[:500]
        if cause:
            body["cause"] = cause
        return self._call("POST", f"/api/v1/leases/{lease_id}/status/", body)

    def lease(self, lease_id: int) -> dict:
        return self._call("GET", f"/api/v1/leases/{lease_id}/")

    def put_logs(self, lease_id: int, text: str) -> dict:
        """Replace the lease's log tail on the marketplace (what its client sees)."""
        return self._call("PUT", f"/api/v1/leases/{lease_id}/logs/", {"text": text})

    def report_usage(self, lease_id: int, body: dict) -> dict:
        """Send one signed usage report (see ``protocol.usage``)."""
        return self._call("POST", f"/api/v1/leases/{lease_id}/usage/", body)

    def report_usage_batch(self, reports: list[dict]) -> dict:
        """Send signed usage reports of many leases at once (each with its ``lease``); the answer
        has one result per report, in order."""
        return self._call("POST", "/api/v1/usage-reports/", {"reports": reports})

    # --- proof-of-GPU checks (docs/PROOF_OF_GPU.md) ---------------------------------------------
    def gpu_checks(self) -> list[dict]:
        """The checks to answer now (then the last finished ones)."""
        return self._call("GET", "/api/v1/providers/me/checks/")

    def start_check(self, check_id: int) -> dict:
        """The seed and the parameters; the marketplace's clock starts."""
        return self._call("POST", f"/api/v1/providers/me/checks/{check_id}/start/")

    def commit_check(self, check_id: int, root: str) -> dict:
        return self._call("POST", f"/api/v1/providers/me/checks/{check_id}/commitment/", {"root": root})

    def open_check(self, check_id: int, opening: dict) -> dict:
        return self._call("POST", f"/api/v1/providers/me/checks/{check_id}/opening/", opening)

    # --- hardware attestation ---------------------------------------------------------------------
    def attestations(self) -> list[dict]:
        """This provider's attestations, newest first."""
        return self._call("GET", "/api/v1/providers/me/attestations/")

    def request_attestation(self, gpu_model: str) -> dict:
        """A nonce to attest this host's GPUs of ``gpu_model`` for."""
        return self._call("POST", "/api/v1/providers/me/attestations/", {"gpu_model": gpu_model})

    def send_attestation(self, attestation_id: int, token: str) -> dict:
        return self._call("POST", f"/api/v1/providers/me/attestations/{attestation_id}/token/", {"token": token})
