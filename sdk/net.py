"""Client addresses: CIDR ranges, and who the client is behind trusted proxies."""

from __future__ import annotations

import ipaddress

from aiohttp import web


class Networks:
    """CIDR ranges; an IPv4 address seen through IPv6 (``::ffff:127.0.0.1``) counts as IPv4."""

    def __init__(self, cidrs: list[str]) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


class ClientIP:
    """The client's address; ``X-Forwarded-For`` is believed only from trusted proxies."""

    def __init__(self, trusted: list[str]) -> None:
        self.networks = Networks(trusted)

    def _trusted(self, addr: str) -> bool:
        return addr in self.networks

    def __call__(self, request: web.BaseRequest) -> str:
        peer = request.remote or ""
        if not self.networks or not self._trusted(peer):
            return peer
        # every line of the header, in order (a second line must not hide the first)
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        # walk from the nearest hop back; the first address we do not trust is the client
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer
