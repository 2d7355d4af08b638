"""URL text helpers shared by the store and the backends: passwords never leave this module."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_PARAMETERS = frozenset({"password", "pass", "pwd", "secret", "token", "sslpassword"})


def masked(url: str) -> str:
    """The URL (or comma-separated URLs) with any password replaced by ``***``.

    Both places a password can hide are masked: ``user:password@host`` and ``?password=...``;
    a host list (``h1:9042,h2:9042``) is kept as it is.
    """
    if "," in url and "://" in url.split(",", 1)[1]:
        return ",".join(masked(u) for u in url.split(","))
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hosts}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMETERS for k, _ in pairs):
            shown = [(k, "***" if k.lower() in SECRET_PARAMETERS else v) for k, v in pairs]
            parts = parts._replace(query=urlencode(shown, safe="*"))
    return urlunsplit(parts)
