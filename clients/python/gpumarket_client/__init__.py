"""The GPU Market client: a Python SDK (``Client``, ``AsyncClient``) and the ``gpumarket`` command."""

from gpumarket_client.client import AsyncClient, Client
from gpumarket_client.errors import ApiError, TransportError
from gpumarket_client.models import Bid, Lease, LeaseLog, Offer, Order, usd

__all__ = ["ApiError", "AsyncClient", "Bid", "Client", "Lease", "LeaseLog", "Offer", "Order", "TransportError", "usd"]
