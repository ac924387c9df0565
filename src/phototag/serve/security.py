"""The service's safety rules: where it may listen, who may call it, and which URLs it may fetch.

* **Binding**: loopback by default. A non-loopback address without an API key is refused at start
  (:func:`check_bind`) unless ``serve.allow_unauthenticated`` says so on purpose.
* **Authentication**: ``Authorization: Bearer KEY`` on every route but ``/healthz`` and Immich's ``/ping``,
  compared in constant time (:func:`bearer_ok`). The key comes from ``serve.api_key`` or PHOTOTAG_API_KEY.
* **URL images** (:func:`fetch_image`): off unless ``serve.fetch_urls``; then only http(s), only to hosts in
  ``serve.fetch_allowed_hosts``, and every address the host resolves to must be public (no private, loopback,
  link-local, multicast or reserved ranges: no SSRF into the server's network). Redirects are followed by hand,
  at most 3, each hop checked again; the connection goes to the checked address (no second DNS answer); the
  body is capped at ``serve.fetch_max_mb`` while it streams.

Nothing a client sends reaches a file path, a shell or exiftool: uploads are decoded from memory
(:mod:`phototag.serve.decode`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from urllib.parse import urljoin, urlsplit

from ..config import ServeSettings
from ..errors import ConfigError
from .errors import BadRequest, NotAvailable, ServeError, TooLarge

API_KEY_ENV = "PHOTOTAG_API_KEY"
OPEN_PATHS = frozenset({"/healthz", "/ping"})
"""Routes that answer without a key: liveness, and Immich's ping (Immich sends no key)."""
MAX_REDIRECTS = 3
AddressCheck = Callable[[str], bool]


def api_key(settings: ServeSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The API key: ``serve.api_key``, else PHOTOTAG_API_KEY; None when neither is set (or empty)."""
    environ = os.environ if environ is None else environ
    key = settings.api_key or environ.get(API_KEY_ENV) or None
    return key.strip() or None if key else None


def is_loopback(host: str) -> bool:
    """Is ``host`` (an address or ``localhost``) a loopback address?"""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, key: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to listen on a non-loopback address without an API key, unless that is explicitly allowed."""
    if key or allow_unauthenticated or is_loopback(host):
        return
    raise ConfigError(
        f"refusing to serve {host} without an API key: anyone who can reach it could use the models. Set "
        f"serve.api_key (or {API_KEY_ENV}), or bind 127.0.0.1, or set serve.allow_unauthenticated: true "
        "(behind an authenticating reverse proxy)",
        "serve.host",
    )


def bearer_ok(authorization: str | None, key: str) -> bool:
    """Does the ``Authorization`` header carry ``Bearer <key>``? Constant-time in the key."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), key.encode())


# -- fetching image URLs ----------------------------------------------------------------------------------


def address_allowed(address: str) -> bool:
    """Is ``address`` a public unicast address (not private, loopback, link-local, multicast, reserved,
    unspecified; IPv4-mapped IPv6 addresses are judged as the IPv4 address)?"""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_url(url: str, settings: ServeSettings) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url`` if the settings allow fetching it; raises :class:`ServeError`."""
    if not settings.fetch_urls:
        raise NotAvailable(
            "image URLs are not fetched by this server (serve.fetch_urls is off): send the image itself "
            "(multipart upload, base64 or a data: URL)",
            code="url_fetch_disabled",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"only http and https image URLs are fetched, got {parts.scheme or 'none'!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise BadRequest("the image URL has no host")
    allowed = {h.lower().rstrip(".") for h in settings.fetch_allowed_hosts}
    if host not in allowed:
        raise BadRequest(
            f"the host {host!r} is not in serve.fetch_allowed_hosts; add it there to fetch images from it",
            code="url_host_not_allowed",
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest("the image URL has an invalid port") from None
    return parts.scheme, host, port


async def resolve_public(host: str, port: int, is_public: AddressCheck = address_allowed) -> str:
    """One address of ``host``; raises when any address it resolves to is not public (a name that answers
    both a public and a private address is refused)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise BadRequest(
            f"cannot resolve the image URL's host {host!r}: {e}", code="url_unresolvable"
        ) from None
    addresses = sorted({str(info[4][0]) for info in infos})
    bad = [a for a in addresses if not is_public(a)]
    if bad or not addresses:
        raise BadRequest(
            f"the image URL's host {host!r} resolves to a private or reserved address ({', '.join(bad)}): "
            "refused",
            code="url_address_refused",
        )
    return addresses[0]


async def fetch_image(
    url: str, settings: ServeSettings, *, is_public: AddressCheck = address_allowed
) -> bytes:
    """The bytes at ``url``, when the settings allow it (see the module docstring); raises
    :class:`ServeError` (400 refused, 413 too large, 502 the remote failed, 504 too slow). ``is_public``
    judges each resolved address (tests that fetch from a loopback server pass their own)."""
    check_url(url, settings)  # refuse before any network work
    try:
        async with asyncio.timeout(settings.fetch_timeout_s):
            return await _fetch(url, settings, is_public)
    except TimeoutError:
        raise ServeError(
            f"fetching {url} took longer than serve.fetch_timeout_s", status=504, code="url_fetch_timeout"
        ) from None


async def _fetch(url: str, settings: ServeSettings, is_public: AddressCheck) -> bytes:
    import httpx

    limit = int(settings.fetch_max_mb * 1024 * 1024)
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port = check_url(url, settings)
        address = await resolve_public(host, port, is_public)
        # connect to the checked address; the Host header and TLS name stay the host's
        transport = httpx.AsyncHTTPTransport(retries=0)
        ip = f"[{address}]" if ":" in address else address
        target = urlsplit(url)._replace(netloc=f"{ip}:{port}").geturl()
        headers = {"Host": host if port in (80, 443) else f"{host}:{port}"}
        async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
            try:
                extensions = {"sni_hostname": host} if scheme == "https" else {}
                request = client.build_request("GET", target, headers=headers, extensions=extensions)
                response = await client.send(request, stream=True)
            except httpx.HTTPError as e:
                raise ServeError(f"fetching {url} failed: {e}", status=502, code="url_fetch_failed") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise ServeError(
                            f"fetching {url}: a redirect without a Location",
                            status=502,
                            code="url_fetch_failed",
                        )
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise ServeError(
                        f"fetching {url} answered HTTP {response.status_code}",
                        status=502,
                        code="url_fetch_failed",
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise TooLarge(f"the image at {url} is larger than serve.fetch_max_mb")
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise TooLarge(f"the image at {url} is larger than serve.fetch_max_mb")
                return bytes(data)
            finally:
                await response.aclose()
    raise BadRequest(f"fetching {url}: more than {MAX_REDIRECTS} redirects", code="url_too_many_redirects")
