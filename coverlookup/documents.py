"""Bytes -> Python values for JSON and YAML documents, with errors that say line and column."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from coverlookup.errors import DocumentSyntaxError

# Deeper than any real metadata document; keeps YAML (which recurses in Python) and our own
# tree walks far away from the interpreter's recursion limit.
MAX_DEPTH = 200

# How many values YAML aliases may add beyond the document's own text. Real documents use an
# anchor for a repeated block or two; the "billion laughs" document adds 10^9.
MAX_ALIAS_EXPANSION = 100_000

# YAML is parsed in pure Python at a few hundred kB per second; Open Energy metadata lists are
# kilobytes. A bigger YAML body (a hostile server can send 64 MB) would hold a crawl for minutes.
MAX_YAML_BYTES = 4 * 1024 * 1024


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


# UTF-32 first: its little-endian mark starts with the UTF-16 one.
_OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _decode(data: bytes) -> str:
    if not data.strip():
        raise DocumentSyntaxError("the document is empty", line=1, column=1)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for bom, encoding in _OTHER_BOMS:
        if data.startswith(bom):
            raise DocumentSyntaxError(
                f"the document is {encoding} text (it starts with a {encoding} byte order mark); "
                "documents must be UTF-8: re-save it as UTF-8",
                line=1,
                column=1,
            )
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data[: exc.start].decode("utf-8", "replace"), exc.start)
        raise DocumentSyntaxError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            "(is this a binary file?)",
            line=line,
            column=col,
        ) from None
    if nul >= 0:
        line, col = _line_col(text, len(data[:nul].decode("utf-8", "replace")))
        raise DocumentSyntaxError(
            f"NUL byte at offset {nul} (is this a binary file?)", line=line, column=col
        )
    return text


def _check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise DocumentSyntaxError(f"nesting deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


_BRACKET_STEPS: Any = None  # byte -> +1 for [ {, -1 for ] }, 0 otherwise (numpy, made once)


def _bracket_steps() -> Any:
    global _BRACKET_STEPS
    if _BRACKET_STEPS is None:
        import numpy as np

        table = np.zeros(256, dtype=np.int8)
        table[[ord("["), ord("{")]] = 1
        table[[ord("]"), ord("}")]] = -1
        _BRACKET_STEPS = table
    return _BRACKET_STEPS


def _depth_prescan(text: str, limit: int = MAX_DEPTH, *, data: bytes | None = None) -> None:
    """Refuse absurd bracket nesting before any recursive code walks the value.

    The fast path counts brackets outside strings with numpy; only a document that is too deep
    pays for the character loop that finds the line and column.
    """
    if data is None:
        data = text.encode("utf-8")
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    import numpy as np

    stripped = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
    steps = _bracket_steps()[stripped]  # +1 for [ {, -1 for ] }, 0 for every other byte
    steps = steps[steps != 0]  # only brackets: the running sum is 5x quicker on them alone
    if int(np.cumsum(steps, dtype=np.int32).max(initial=0)) <= limit:
        return
    depth = 0
    in_string = False
    escape = False
    for pos, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                line, col = _line_col(text, pos)
                raise DocumentSyntaxError(
                    f"nesting deeper than {limit} levels at line {line} column {col}",
                    line=line,
                    column=col,
                )
        elif ch in "]}":
            depth -= 1


def parse_json(data: bytes) -> Any:
    """Strict JSON (RFC 8259): no NaN/Infinity, no trailing commas, no lone surrogates."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = _decode(data)
    _depth_prescan(text, data=data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        line, col = exc.lineno, exc.colno
        msg = exc.msg
        snippet = text[exc.pos : exc.pos + 12]
        if snippet[:3] in ("NaN", "Inf", "-In"):
            msg = "NaN and Infinity are not valid JSON numbers"
        elif "surrogate" in msg.lower():
            msg = "lone UTF-16 surrogate in a \\u escape (not valid Unicode text)"
        raise DocumentSyntaxError(
            f"invalid JSON at line {line} column {col}: {msg}", line=line, column=col
        ) from None


def parse_yaml(data: bytes) -> Any:
    import yaml

    if len(data) > MAX_YAML_BYTES:
        raise DocumentSyntaxError(
            f"a YAML document of {len(data):,} bytes is over the {MAX_YAML_BYTES:,} byte limit "
            "for YAML (its parser is slow); publish large documents as JSON"
        )
    text = _decode(data)
    _depth_prescan(text)
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_alias_expansion(node)
                _keep_text(node)
            value = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = exc.problem or exc.context or "syntax error"
        raise DocumentSyntaxError(
            f"invalid YAML at line {line} column {col}: {problem}", line=line, column=col
        ) from None
    except DocumentSyntaxError:
        raise
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        # ValueError: an integer of over 4,300 digits (Python's int limit), among others
        raise DocumentSyntaxError(f"invalid YAML: {exc}") from None
    _check_depth(value)
    return _plain(value)


# Values that are text even where YAML would read a number: Open Energy's version is
# "1.10", not 1.1, and an identifier "0123" is not the octal number 83.
YAML_TEXT_KEYS = frozenset(
    {
        "dcat:version",
        "dcat:versionNotes",
        "dct:title",
        "dct:description",
        "oe:dataSetStableIdentifier",
        "ib1oe:dataSetStableIdentifier",
        "oe:sensitivityClass",
        "ib1oe:sensitivityClass",
    }
)
# Plain scalars YAML would read as something else: numbers, and yes/no/on/off as booleans.
_YAML_NUMBER_TAGS = frozenset(
    {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"}
)


def _keep_text(root: Any) -> None:
    """Retag a plain number under one of ``YAML_TEXT_KEYS`` as the string it was written as."""
    import yaml

    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for i, (key, value) in enumerate(node.value):
                if (
                    isinstance(key, yaml.ScalarNode)
                    and key.value in YAML_TEXT_KEYS
                    and isinstance(value, yaml.ScalarNode)
                    and value.tag in _YAML_NUMBER_TAGS
                ):
                    # A new node: an alias of the old one elsewhere keeps its own reading.
                    text = yaml.ScalarNode("tag:yaml.org,2002:str", value.value)
                    node.value[i] = (key, text)
                    continue
                stack.append(value)


def _check_alias_expansion(root: Any, limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Refuse YAML whose aliases would expand into a huge tree ("billion laughs").

    PyYAML shares aliased nodes, but every tree walk after it (depth check, JSON-shaping,
    validation) visits each use separately. Count the expanded size over the node graph,
    each distinct node once (memoised), before anything is constructed.
    """
    import yaml

    sizes: dict[int, int] = {}
    literal = 0
    # Iterative post-order walk over the composed node graph.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        if not done:
            literal += 1
            sizes[key] = -1  # in progress; a recursive alias counts as one node
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        total = 1 + sum(max(sizes.get(id(child), 1), 1) for child in children)
        sizes[key] = total
        if total - literal > limit:
            raise DocumentSyntaxError(
                f"YAML aliases expand to more than {limit:,} extra values "
                "(an alias bomb?); refusing to load it"
            )


def _plain(value: Any) -> Any:
    """YAML gives dates and non-finite floats; make values JSON-shaped like the JSON path."""
    import datetime as dt

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise DocumentSyntaxError("NaN and Infinity are not allowed in documents")
    return value


def parse_document(data: bytes, *, hint: str | None = None) -> Any:
    """Parse JSON, or YAML when ``hint`` (a file name or content type) says so.

    Text that does not start like JSON and fails as JSON is tried as YAML, as long as YAML
    gives an object or a list: Open Energy metadata comes in either form.
    """
    lowered = (hint or "").lower()
    if lowered.endswith((".yaml", ".yml")) or "yaml" in lowered:
        return parse_yaml(data)
    try:
        return parse_json(data)
    except DocumentSyntaxError as json_error:
        text = data.lstrip(b"\xef\xbb\xbf \t\r\n")
        if lowered.endswith(".json") or "json" in lowered or text[:1] in (b"{", b"[", b""):
            raise
        try:
            value = parse_yaml(data)
        except DocumentSyntaxError:
            raise json_error from None
        if isinstance(value, (dict, list)):
            return value
        raise json_error from None
