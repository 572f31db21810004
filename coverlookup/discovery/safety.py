"""What the crawler refuses to fetch: non-http(s) URLs, downgrades and non-global addresses."""

from __future__ import annotations

import ipaddress

from yarl import URL

from coverlookup.errors import UnsafeURLError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def unsafe_address_reason(address: str | IPAddress) -> str | None:
    """Why an address must not be connected to without ``--allow-private``, or None if it is fine.

    Covers loopback, private, link-local (cloud metadata lives at 169.254.169.254), CGNAT,
    multicast, unspecified, reserved, and the IPv4-mapped / NAT64 / 6to4 IPv6 spellings of those.
    """
    if isinstance(address, str):
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
    else:
        ip = address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = unsafe_address_reason(embedded)
            return f"{ip} embeds {inner}" if inner else None
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return f"{ip} is a carrier-grade NAT address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_private:
        return f"{ip} is a private address"
    if ip.is_reserved or not ip.is_global:
        return f"{ip} is not a global address"
    return None


def literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_url(
    url: URL,
    *,
    allow_http: bool,
    allow_private: bool,
    came_from: URL | None = None,
) -> None:
    """Refuse a URL before any connection: scheme, downgrade, literal non-global address."""
    scheme = url.scheme.lower()
    where = f" (redirected from {came_from})" if came_from is not None else ""
    if scheme not in ("http", "https"):
        raise UnsafeURLError(f"{url}: refusing scheme {scheme or 'none'!r}{where}")
    if not url.host:
        raise UnsafeURLError(f"{url}: no host name{where}")
    if came_from is not None and came_from.scheme == "https" and scheme == "http":
        raise UnsafeURLError(
            f"{url}: refusing https -> http downgrade (redirected from {came_from})"
        )
    if scheme == "http" and not allow_http:
        raise UnsafeURLError(f"{url}: plain http refused (use --allow-http){where}")
    ip = literal_ip(url.host)
    if ip is not None and not allow_private:
        reason = unsafe_address_reason(ip)
        if reason:
            raise UnsafeURLError(f"{url}: {reason} (use --allow-private){where}")
