"""Where alert webhooks may go. An org admin names the URLs, so they are an SSRF vector
(the cloud's metadata service, the gateway's own Redis, anything on the loopback or the
private network): a webhook goes only to a host the operator allows
(`webhook_allowed_hosts`), and only to addresses that are public after DNS resolution, unless
the operator allows that network by name too (`webhook_allowed_networks`, for an alert
receiver inside the operator's own network).

The check is made where the URL is stored (the admin API: allowlist and literal addresses)
and again where it is used: the name is resolved once, every address it resolves to is
checked, and the POST connects to the checked address (the Host header and TLS name stay
the URL's), so a DNS answer that changes between the check and the connect (rebinding)
changes nothing. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_WEBHOOKS = 5  # per policy
MAX_URL_CHARS = 2048
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the well-known prefix: an IPv4 address inside


class WebhookRefused(Exception):
    """A webhook URL the gateway will not call; str() says why (no secret in it)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one POST goes: the checked address, and the name the request carries."""

    url: str  # the URL with the checked address in place of the host name
    host_header: str
    tls_name: str | None  # https: the name the certificate is checked against (SNI)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why a webhook must not go to `ip` (None: a public address)."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return address_problem(inner)
    for flag, name in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, flag):
            return f"{ip} is a {name} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class WebhookPolicy:
    def __init__(self, hosts: tuple[str, ...] = (), networks: tuple[str, ...] = ()) -> None:
        self.hosts = tuple(h.lower().rstrip(".") for h in hosts)
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def _parse(self, url: str) -> tuple[SplitResult, str]:
        if len(url) > MAX_URL_CHARS:
            raise WebhookRefused(f"a webhook URL is at most {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            parts.port  # noqa: B018  # a bad port raises here
        except ValueError as exc:
            raise WebhookRefused(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise WebhookRefused("a webhook is an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise WebhookRefused("a webhook URL carries no user name or password")
        return parts, host

    def host_allowed(self, host: str) -> bool:
        host = host.lower()
        for allowed in self.hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                    return True
            elif host == allowed:
                return True
        return False

    def address_allowed(self, ip: IPAddress) -> str | None:
        """None when the gateway may connect to `ip`, else why not."""
        if any(ip.version == net.version and ip in net for net in self.networks):
            return None
        return address_problem(ip)

    def check(self, url: str) -> None:
        """What can be known without DNS: the shape, the allowlist, a literal address.
        Raises WebhookRefused."""
        _, host = self._parse(url)
        if not self.host_allowed(host):
            if not self.hosts:
                raise WebhookRefused(
                    "webhooks are off: the operator allows no host (webhook_allowed_hosts)"
                )
            raise WebhookRefused(f"host {host!r} is not in the operator's webhook_allowed_hosts")
        ip = literal_ip(host)
        if ip is not None and (why := self.address_allowed(ip)) is not None:
            raise WebhookRefused(why)

    async def resolve(self, url: str) -> Target:
        """The checked address to connect to for `url`: every address the name resolves to
        must be allowed (a name that also resolves to a private address is refused)."""
        self.check(url)
        parts, host = self._parse(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = literal_ip(host)
        if ip is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise WebhookRefused(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
            found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
            for candidate in found:
                if (why := self.address_allowed(candidate)) is not None:
                    raise WebhookRefused(f"{host!r} resolves to {why}")
            if not found:
                raise WebhookRefused(f"{host!r} resolves to no address")
            ip = found[0]
        shown = f"[{ip}]" if ip.version == 6 else str(ip)
        netloc = f"{shown}:{port}"
        path = parts.path or "/"
        pinned = f"{parts.scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")
        return Target(
            url=pinned,
            host_header=parts.netloc.rpartition("@")[2],
            tls_name=host if parts.scheme == "https" else None,
        )
