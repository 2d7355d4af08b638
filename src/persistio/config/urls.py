"""URL text helpers shared by the store and the backends: passwords never leave this module."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# a comma that starts another URL (a failover list), not one inside a host list
_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")

SECRET_PARAMETERS = frozenset({"password", "pass", "pwd", "secret", "token", "sslpassword"})


def split_urls(text: str) -> list[str]:
    """``"url,url"`` -> its URLs; a host list (``redis+cluster://h1:7000,h2:7001/``) is one."""
    return [u.strip() for u in _NEXT_URL.split(text)]


def masked(url: str) -> str:
    """The URL (or comma-separated URLs) with any password replaced by ``***``.

    Both places a password can hide are masked: ``user:password@host`` and ``?password=...``;
    a host list (``h1:9042,h2:9042``) is kept as it is.
    """
    urls = split_urls(url)
    if len(urls) > 1:
        return ",".join(masked(u) for u in urls)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    original = parts
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hosts}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMETERS for k, _ in pairs):
            shown = [(k, "***" if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
            parts = parts._replace(query=urlencode(shown, safe="*"))
    # unchanged: as given (urlunsplit turns sqlite:////abs/path into sqlite://abs/path)
    return url if parts == original else urlunsplit(parts)
