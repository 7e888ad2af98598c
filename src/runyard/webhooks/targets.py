"""Where webhooks may be sent (DESIGN §11): http(s) URLs of public hosts.

A host that is, or resolves to, a private, loopback, link-local, multicast, reserved or
unspecified address is refused unless ``RUNYARD_WEBHOOK_ALLOW_PRIVATE=true``: a subscription
must not be a way into the server's own network (SSRF). The check runs when a subscription is
saved and again before every attempt, and an attempt connects to the very addresses that were
checked (:func:`addresses`), so a name that resolves elsewhere the second time (DNS
rebinding) gains nothing. Names are resolved with the event loop's ``getaddrinfo`` (in a
thread), never blocking the loop.
"""

import asyncio
import ipaddress
import socket

import httpx

#: how long resolving a webhook's host may take
RESOLVE_SECONDS = 5.0
MAX_URL_LENGTH = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL is not one webhooks may be sent to; the message says why."""


def parse(url: str) -> httpx.URL:
    """The URL, when it is an absolute http(s) URL with a host."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise TargetRefused(f"not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("only http and https URLs can receive webhooks")
    if not parsed.host:
        raise TargetRefused("the URL has no host")
    return parsed


def forbidden(address: IPAddress) -> bool:
    """Whether webhooks must not reach ``address`` (unless private targets are allowed)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden(address.ipv4_mapped)
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def resolve(url: httpx.URL) -> list[str]:
    """The addresses of the URL's host (itself when it is an address), in resolver order."""
    host = url.host
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise TargetRefused(f"resolving {host} took longer than {RESOLVE_SECONDS:g} s") from exc
    except OSError as exc:
        raise TargetRefused(f"{host} does not resolve ({exc.strerror or exc})") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    return addresses


async def check(url: str, *, allow_private: bool) -> None:
    """Refuse a URL webhooks may not be sent to (when a subscription is saved)."""
    parsed = parse(url)
    if not allow_private:
        _refuse_private(parsed, await resolve(parsed))


async def addresses(url: str, *, allow_private: bool) -> list[str]:
    """The addresses an attempt may connect to (before each attempt); refused as
    :func:`check` refuses."""
    parsed = parse(url)
    found = await resolve(parsed)
    if not allow_private:
        _refuse_private(parsed, found)
    return found


def _refuse_private(parsed: httpx.URL, addresses: list[str]) -> None:
    for address in addresses:
        if forbidden(ipaddress.ip_address(address.split("%", 1)[0])):
            shown = parsed.host if parsed.host == address else f"{parsed.host} resolves to"
            raise TargetRefused(
                f"{shown} {address}, which is not a public address; webhooks are not sent to "
                "private, loopback, link-local, multicast, reserved or unspecified addresses "
                "(RUNYARD_WEBHOOK_ALLOW_PRIVATE=true allows them)"
            )
