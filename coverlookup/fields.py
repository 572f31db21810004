"""Typed field readers shared by the document parsers: each read records findings at a pointer."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

from coverlookup.findings import FindingList, pointer

_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$"
)


class Reader:
    """Reads fields of one JSON object, recording findings against its pointer."""

    def __init__(self, obj: Mapping[str, Any], base: str, found: FindingList, url: str):
        self.obj = obj
        self.base = base
        self.found = found
        self.url = url

    def ptr(self, *parts: str | int) -> str:
        return self.base + pointer(*parts)

    def require(self, names: Iterable[str], what: str) -> None:
        for name in names:
            if name not in self.obj:
                self.found.error(
                    self.ptr(name),
                    "missing-field",
                    f"{what} is missing the REQUIRED '{name}' field",
                )

    def string(self, name: str, *, nullable: bool = False) -> str | None:
        value = self.obj.get(name)
        if value is None:
            if name in self.obj and not nullable:
                self.found.error(
                    self.ptr(name), "wrong-type", f"'{name}' is null, expected a string"
                )
            return None
        if not isinstance(value, str):
            self.found.error(
                self.ptr(name),
                "wrong-type",
                f"'{name}' must be a string, got {type_name(value)}",
            )
            return None
        if not value.strip():
            self.found.warning(self.ptr(name), "empty-string", f"'{name}' is an empty string")
        return value

    def datetime(self, name: str) -> str | None:
        value = self.string(name)
        if value is None:
            return None
        if parse_datetime(value) is None:
            self.found.warning(
                self.ptr(name),
                "bad-datetime",
                f"'{name}' is {value!r}, not an RFC 3339 / ISO 8601 date-time "
                "(e.g. 2024-01-01T00:00:00Z)",
            )
        elif _DATETIME.match(value).group(8) is None:  # type: ignore[union-attr]
            self.found.notice(
                self.ptr(name),
                "datetime-without-offset",
                f"'{name}' is {value!r}, with no time zone offset (such as Z); read as UTC",
            )
        return value

    def url_field(self, name: str, *, nullable: bool = False) -> str | None:
        value = self.string(name, nullable=nullable)
        if value is None:
            return None
        return check_url(value, self.ptr(name), self.found, self.url, field=name)

    def string_list(self, name: str) -> tuple[str, ...]:
        value = self.obj.get(name)
        if value is None:
            if name in self.obj:
                self.found.error(
                    self.ptr(name), "wrong-type", f"'{name}' is null, expected an array"
                )
            return ()
        if not isinstance(value, list):
            self.found.error(
                self.ptr(name), "wrong-type", f"'{name}' must be an array, got {type_name(value)}"
            )
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.found.error(
                    self.ptr(name, i),
                    "wrong-type",
                    f"'{name}' items must be strings, got {type_name(item)}",
                )
            elif item in out:
                self.found.warning(
                    self.ptr(name, i), "duplicate-value", f"{item!r} is listed twice in '{name}'"
                )
            else:
                out.append(item)
        return tuple(out)

    def enum_list(self, name: str, known: frozenset[str], what: str) -> tuple[str, ...]:
        values = self.string_list(name)
        raw = self.obj.get(name) if isinstance(self.obj.get(name), list) else []
        for item in values:
            if item not in known:
                index = raw.index(item)
                self.found.notice(
                    self.ptr(name, index),
                    "unknown-enum",
                    f"unknown {what} {item!r} (kept; clients ignore unknown values)",
                )
        return values


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_datetime(value: str) -> dt.datetime | None:
    match = _DATETIME.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        # RFC 3339 allows a leap second (60); clamp it so datetime accepts the rest of the value.
        parsed = dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        return None
    offset = match.group(8)
    if offset and offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:  # +24:00, +99:99: no offset datetime can hold
            return None
        return parsed.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes)))
    return parsed.replace(tzinfo=dt.timezone.utc)


# URL fields the crawler fetches: kept without a fragment or credentials.
FETCHED_URL_FIELDS = frozenset(
    {"coverage", "related_metadata", "next", "previous", "geojson_resource"}
)


def check_url(
    value: str, ptr: str, found: FindingList, base: str | None, *, field: str
) -> str | None:
    """Validate a URL field; return it absolute (resolved against ``base``) or None if unusable."""
    stripped = value.strip()
    try:
        parts = urlsplit(stripped)
    except ValueError:
        found.error(ptr, "bad-url", f"'{field}' is not a valid URL: {value!r}")
        return None
    if any(ch.isspace() for ch in stripped) or not stripped:
        found.error(ptr, "bad-url", f"'{field}' is not a valid URL: {value!r}")
        return None
    if not parts.scheme:
        if base and urlsplit(base).scheme in ("http", "https", "file"):
            resolved = urljoin(base, stripped)
            if field in FETCHED_URL_FIELDS:  # //user:pw@host/x is relative too
                resolved = _fetchable(resolved, ptr, found, field)
                value = "(credentials dropped)" if "@" in urlsplit(stripped).netloc else value
            found.warning(
                ptr,
                "relative-url",
                f"'{field}' is a relative URL {value!r}; read as {resolved}",
            )
            return resolved
        found.error(ptr, "bad-url", f"'{field}' is not an absolute URL: {value!r}")
        return None
    if parts.scheme not in ("http", "https"):
        found.error(
            ptr,
            "bad-url-scheme",
            f"'{field}' uses the {parts.scheme!r} scheme; only https (or http) URLs can be used",
        )
        return None
    if not parts.hostname:
        found.error(ptr, "bad-url", f"'{field}' has no host: {value!r}")
        return None
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        found.error(ptr, "bad-url", f"'{field}' has an invalid port: {value!r}")
        return None
    if field in FETCHED_URL_FIELDS:
        stripped = _fetchable(stripped, ptr, found, field)
    elif parts.username is not None or parts.password is not None:
        found.warning(
            ptr,
            "credentials-in-url",
            f"'{field}' carries a user name or password before the host; a public document "
            "should not publish credentials",
        )
    if parts.scheme == "http":
        shown = stripped if field in FETCHED_URL_FIELDS else value
        found.warning(ptr, "not-https", f"'{field}' is not an https URL: {shown}")
    return stripped


def _fetchable(url: str, ptr: str, found: FindingList, field: str) -> str:
    """A URL the crawler fetches, without credentials (never sent or stored) and without a
    fragment (never sent: one document has one URL, and its entries' keys one '#')."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        found.warning(
            ptr,
            "credentials-in-url",
            f"'{field}' carries a user name or password before the host; a public document "
            "should not publish credentials; they are dropped, never sent or stored",
        )
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return urldefrag(url)[0] if "#" in url else url
