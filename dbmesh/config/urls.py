"""Parse the data source URLs that ShardingSphere configs carry (JDBC and libpq/URI style).

Accepted forms (the scheme is case-insensitive)::

    jdbc:mysql://host[:port]/[database][?k=v&...]      default port 3306
    jdbc:mariadb://host[:port]/[database][?...]        spoken to as MySQL
    mysql://[user[:password]@]host[:port]/[database][?...]
    mariadb://...
    jdbc:postgresql://host[:port]/[database][?...]     default port 5432
    postgresql://[user[:password]@]host[:port]/[database][?...]
    postgres://...

>>> u = parse_url("jdbc:mysql://127.0.0.1/demo_ds_0?serverTimezone=UTC&useSSL=false")
>>> (u.protocol, u.host, u.port, u.database, dict(u.params))
('mysql', '127.0.0.1', 3306, 'demo_ds_0', {'serverTimezone': 'UTC', 'useSSL': 'false'})
>>> parse_url("postgres://app:pw@[::1]:6432/shop").port
6432

Multi-host URLs (JDBC failover lists) are refused: dbmesh connects to exactly one server per data source,
and silently using only the first host would hide a failover set-up the user believes is active.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

Protocol = Literal["mysql", "postgresql"]

DEFAULT_PORTS: Mapping[Protocol, int] = MappingProxyType({"mysql": 3306, "postgresql": 5432})

# Scheme (lower-cased, with any "jdbc:" prefix kept) -> the wire protocol dbmesh speaks to that server.
_SCHEMES: Mapping[str, Protocol] = MappingProxyType({
    "jdbc:mysql": "mysql",
    "jdbc:mariadb": "mysql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "jdbc:postgresql": "postgresql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
})


class UrlError(ValueError):
    """A data source URL that cannot be used; the message says why (the loader wraps it in a ConfigError)."""


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """The parts of a data source URL that dbmesh uses."""

    protocol: Protocol  # the wire protocol of the server behind the URL
    host: str  # host name or IP address, IPv6 without brackets
    port: int  # explicit port, or the protocol's default
    database: str | None  # the physical database/schema to select, None when the path is empty
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # query string, in order
    username: str | None = None  # user from "user:password@" (URI style only)
    password: str | None = field(default=None, repr=False)  # password from "user:password@"; never repr'd


def parse_url(url: str) -> ParsedUrl:
    """Parse a JDBC or URI-style data source URL; raise UrlError with a readable reason.

    >>> parse_url("jdbc:postgresql://db.internal/orders").port
    5432
    >>> parse_url("jdbc:oracle:thin:@h:1521/x")
    Traceback (most recent call last):
    ...
    dbmesh.config.urls.UrlError: unsupported URL scheme 'jdbc:oracle' (expected one of: jdbc:mysql, jdbc:mariadb, mysql, mariadb, jdbc:postgresql, postgresql, postgres)
    """
    text = url.strip()
    if not text:
        raise UrlError("the URL is empty")
    scheme, sep, rest = text.partition("://")
    if not sep:  # still name the scheme when there is one, e.g. jdbc:oracle:thin:@host:1521/x
        words = text.split(":")
        scheme = ":".join(words[:2]) if len(words) > 2 and words[0].lower() == "jdbc" else ""
    scheme = scheme.lower()
    protocol = _SCHEMES.get(scheme)
    if protocol is None and scheme:
        raise UrlError(f"unsupported URL scheme {scheme!r} (expected one of: {', '.join(_SCHEMES)})")
    if protocol is None or not sep:
        head = text.split("/", 1)[0]
        raise UrlError(f"the URL must look like <scheme>://host[:port]/database, got {head!r}...")
    # urlsplit understands "//netloc/path?query" for any scheme once we hand it a neutral one.
    parts = urlsplit("x://" + rest)
    netloc = parts.netloc
    hostport = netloc.rpartition("@")[2]
    if "," in hostport:
        raise UrlError(f"several hosts ({hostport}) are not supported; give one data source per server")
    try:
        host = parts.hostname
        explicit_port = parts.port
    except ValueError as exc:  # non-numeric or out-of-range port
        raise UrlError(f"bad port in {hostport!r}: {exc}") from None
    if not host:
        raise UrlError("the URL has no host")
    if explicit_port is not None and not 1 <= explicit_port <= 65535:
        raise UrlError(f"port {explicit_port} is outside 1..65535")
    if parts.fragment:
        raise UrlError(f"the URL has a fragment '#{parts.fragment}', which means nothing to a database URL")
    path = unquote(parts.path.lstrip("/"))
    if "/" in path:
        raise UrlError(f"the database name {path!r} contains '/'")
    try:
        params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise UrlError(f"cannot parse the query string {parts.query!r}") from None
    return ParsedUrl(
        protocol=protocol,
        host=host,
        port=explicit_port if explicit_port is not None else DEFAULT_PORTS[protocol],
        database=path or None,
        params=MappingProxyType(params),
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
