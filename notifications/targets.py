"""Where webhooks may go: public addresses only, unless settings allow private ones (tests, labs).

The host is resolved when the endpoint is registered and again before every delivery, so a name
that later points at a private address (DNS rebinding) is still refused.
"""

import ipaddress
import socket
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    """The URL is malformed or points where webhooks may not go; the message says why."""


def check_url(url: str, *, allow_private: bool) -> list[str]:
    """The addresses ``url`` resolves to, or TargetRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("https", "http"):
        raise TargetRefused("the URL must be https (or http)")
    if parts.scheme == "http" and not allow_private:
        raise TargetRefused("the URL must be https")
    if not parts.hostname or parts.username or parts.password:
        raise TargetRefused("the URL needs a host and no credentials")
    try:
        infos = socket.getaddrinfo(
            parts.hostname, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {parts.hostname} does not resolve") from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise TargetRefused(f"{parts.hostname} resolves to {address}, which is not a public address")
    return addresses
