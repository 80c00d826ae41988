"""Where webhooks may be sent: public addresses only, unless WEBHOOK_ALLOW_PRIVATE_ADDRESSES.

A client's URL must not turn the platform into a way to reach its own network (the database,
the broker, a cloud's metadata service). Checked when an endpoint is saved (a literal address
or `localhost`) and again before every attempt, on the addresses the name resolves to then."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

LOCAL_NAMES = {"localhost", "localhost.localdomain"}


def _private(address: str) -> bool:
    return not ipaddress.ip_address(address.split("%")[0]).is_global


def literal_refusal(url: str) -> str | None:
    """Why `url` may not be an endpoint, judged without asking DNS; None when it may."""
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return None
    host = (urlsplit(url).hostname or "").lower()
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return f"{host} is this machine: webhooks go to public addresses only"
    try:
        private = _private(host)
    except ValueError:
        return None  # a name: resolved at each attempt
    return f"{host} is a private address: webhooks go to public addresses only" if private \
        else None


def resolved_refusal(url: str) -> str | None:
    """Why nothing may be sent to `url` now (a name resolving to a private address, or not
    resolving at all); None when it may."""
    if settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return None
    refusal = literal_refusal(url)
    if refusal:
        return refusal
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # stored before ports were checked
        return f"the port of {url} is not one from 1 to 65535"
    try:
        infos = socket.getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f"the name {parts.hostname} does not resolve"
    for *_, sockaddr in infos:
        if _private(str(sockaddr[0])):
            return f"{parts.hostname} resolves to a private address ({sockaddr[0]})"
    return None
