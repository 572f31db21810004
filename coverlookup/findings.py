"""Findings: what validation says about a document, each tied to a JSON pointer."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class Severity(str, enum.Enum):
    """ERROR breaks a MUST; WARNING a SHOULD or a suspicious value; NOTICE is informational."""

    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    document: str
    pointer: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "document": self.document,
            "pointer": self.pointer,
            "code": self.code,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            Severity(data["severity"]),
            data["document"],
            data["pointer"],
            data["code"],
            data["message"],
        )

    def __str__(self) -> str:
        where = self.pointer or "/"
        return f"{self.severity.value}: {self.document} {where}: {self.message} [{self.code}]"


def pointer(*parts: str | int) -> str:
    """Build an RFC 6901 JSON pointer from path parts (``pointer("a", 3)`` -> ``/a/3``)."""
    out = []
    for part in parts:
        text = str(part).replace("~", "~0").replace("/", "~1")
        out.append("/" + text)
    return "".join(out)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)


class FindingList(list[Finding]):
    """A list of findings for one document, with helpers that fill in the document name."""

    def __init__(self, document: str):
        super().__init__()
        self.document = document

    def error(self, ptr: str, code: str, message: str) -> None:
        self.append(Finding(Severity.ERROR, self.document, clip(ptr), code, clip(message)))

    def warning(self, ptr: str, code: str, message: str) -> None:
        self.append(Finding(Severity.WARNING, self.document, clip(ptr), code, clip(message)))

    def notice(self, ptr: str, code: str, message: str) -> None:
        self.append(Finding(Severity.NOTICE, self.document, clip(ptr), code, clip(message)))


# Messages quote the offending value; a document with a 5 MB string must not make a 5 MB message.
MAX_TEXT = 1000


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` unchanged when short; else its start and end around a note of what was cut."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit - 200], text[-100:]
    return f"{head}...[{len(text) - len(head) - len(tail):,} characters cut]...{tail}"
