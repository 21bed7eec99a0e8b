"""Usage files → rows → parsed records or rejections. Pure functions, no database.

A file is CSV with a header or JSON lines, optionally gzip-compressed (recognised by its
magic bytes), read as a stream: memory stays flat whatever its size. Every record has
``id``, ``subscription``, ``metric``, ``quantity`` (a decimal string) and ``timestamp``
(RFC 3339 with an offset, or integer epoch seconds); other columns are dimensions.

Control totals ride in the file: a CSV line ``#control,<metric>,<records>,<quantity>``
or a JSON line ``{"control": {"metric": …, "records": …, "quantity": …}}``.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

REQUIRED = ("id", "subscription", "metric", "quantity", "timestamp")
SCALE = 6  # quantities are stored exactly, as integer millionths
MAX_QUANTITY_UNITS = 9_000_000_000_000
MAX_TEXT = 255
_QUANTITY = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?$")
_EPOCH = re.compile(r"^\d{1,11}$")
_EPOCH_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class FileRefused(ValueError):
    """The file as a whole cannot be read (no header, a required column missing)."""


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    event_id: str
    subscription: str
    metric: str
    quantity: int  # millionths
    occurred_at: dt.datetime  # UTC
    dimensions: str  # JSON object text, "" when none
    digest: str  # identity of the content: the same id with another digest is a conflict

    @property
    def day(self) -> dt.date:
        return self.occurred_at.date()

    @property
    def period(self) -> dt.date:
        return self.occurred_at.date().replace(day=1)


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str
    raw: str
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class Control:
    metric: str
    records: int
    quantity: int  # millionths


def quantity_parse(text: str) -> int | str:
    """millionths, or a reason code."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        return "invalid_quantity"
    sign, whole, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    if len(fraction) > SCALE:
        return "quantity_precision"
    if sign and (int(whole) or fraction):
        return "negative_quantity"
    if int(whole) >= MAX_QUANTITY_UNITS:
        return "quantity_too_large"
    return int(whole) * 10**SCALE + int(fraction.ljust(SCALE, "0") or 0)


def quantity_format(millionths: int) -> str:
    whole, fraction = divmod(int(millionths), 10**SCALE)
    return f"{whole}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else str(whole)


def timestamp_parse(text: str) -> dt.datetime | str:
    """UTC datetime, or a reason code."""
    text = text.strip()
    if _EPOCH.match(text):
        return _EPOCH_START + dt.timedelta(seconds=int(text))
    match = _RFC3339.match(text)
    if match is None:
        return "invalid_timestamp"
    if match.group(1) is None:
        return "timestamp_without_offset"
    try:
        return dt.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T")).astimezone(dt.UTC)
    except ValueError:
        return "invalid_timestamp"


def record_parse(line: int, fields: Mapping[str, Any], raw: str) -> Record | Rejected:
    """One row → a Record, or a Rejected with the first reason found."""
    values = {key: "" if value is None else str(value) for key, value in fields.items()}
    event_id = values.get("id", "").strip()
    if not event_id:
        return Rejected(line, "missing_id", raw)
    # A NUL written out in the file, or decoded from JSON's "\u0000" (PostgreSQL text refuses both).
    if "\x00" in raw or any("\x00" in text for pair in values.items() for text in pair):
        return Rejected(line, "nul_byte", raw.replace("\x00", "\\0"), event_id.replace("\x00", "")[:MAX_TEXT])
    if "\ufffd" in raw:
        return Rejected(line, "invalid_utf8", raw, event_id[:MAX_TEXT])
    if len(event_id) > MAX_TEXT:
        return Rejected(line, "id_too_long", raw)
    subscription, metric = values.get("subscription", "").strip(), values.get("metric", "").strip()
    if not subscription:
        return Rejected(line, "missing_subscription", raw, event_id)
    if not metric:
        return Rejected(line, "missing_metric", raw, event_id)
    if len(subscription) > MAX_TEXT or len(metric) > 100:
        return Rejected(line, "value_too_long", raw, event_id)
    quantity = quantity_parse(values.get("quantity", ""))
    if isinstance(quantity, str):
        return Rejected(line, quantity, raw, event_id)
    occurred_at = timestamp_parse(values.get("timestamp", ""))
    if isinstance(occurred_at, str):
        return Rejected(line, occurred_at, raw, event_id)
    dimensions = {key: value for key, value in values.items() if key not in REQUIRED and value != ""}
    dims = json.dumps(dimensions, sort_keys=True, ensure_ascii=False, separators=(",", ":")) if dimensions else ""
    stamp = (occurred_at - _EPOCH_START) // dt.timedelta(microseconds=1)
    digest = hashlib.md5(f"{subscription}\x1f{metric}\x1f{quantity}\x1f{stamp}\x1f{dims}".encode(),
                         usedforsecurity=False).hexdigest()
    return Record(line, event_id, subscription, metric, quantity, occurred_at, dims, digest)


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    """Bytes → text, gunzipping when the stream starts with gzip's magic bytes; a BOM is
    dropped; invalid UTF-8 becomes U+FFFD (and the row is rejected as ``invalid_utf8``).
    ``newline=""``: line ends stay as they are (the csv module handles CRLF itself)."""
    buffered = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        buffered = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="replace", newline="")  # type: ignore[arg-type]


def file_rows(stream: IO[bytes]) -> Iterator[Record | Rejected | Control]:
    """Every row of a usage file, in line order."""
    text = _text(stream)
    first = text.readline()
    while first.strip() == "":
        if not first:
            return
        first = text.readline()
    if first.lstrip().startswith("{"):
        yield from _jsonl_rows(first, text)
    else:
        yield from _csv_rows(first, text)


def _csv_rows(header_line: str, text: io.TextIOBase) -> Iterator[Record | Rejected | Control]:
    header = [name.strip() for name in next(csv.reader([header_line]))]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise FileRefused(f"the header lacks {', '.join(missing)} (it has: {', '.join(header)[:300]})")
    if len(set(header)) != len(header):
        raise FileRefused("the header names a column twice")
    width = len(header)
    consumed: list[str] = []

    def source() -> Iterator[str]:
        for physical in text:
            consumed.append(physical)
            yield physical

    reader = csv.reader(source())
    line = 2  # the line the next record starts on
    for fields in reader:
        raw, start = "".join(consumed).rstrip("\r\n"), line
        line += len(consumed)
        consumed.clear()
        if not fields:
            continue  # a blank line
        if fields[0].startswith("#control"):
            yield _control_csv(start, fields, raw)
        elif len(fields) != width:
            yield Rejected(start, "wrong_column_count", raw, fields[0].strip()[:MAX_TEXT])
        else:
            yield record_parse(start, dict(zip(header, fields, strict=True)), raw)


def _control_csv(line: int, fields: list[str], raw: str) -> Control | Rejected:
    try:
        _, metric, records, quantity = fields
        parsed = quantity_parse(quantity)
        if isinstance(parsed, str) or not metric:
            raise ValueError
        return Control(metric.strip(), int(records), parsed)
    except ValueError:
        return Rejected(line, "invalid_control_totals", raw.rstrip("\r\n"))


def _jsonl_rows(first: str, text: io.TextIOBase) -> Iterator[Record | Rejected | Control]:
    for line, raw in enumerate(_chain(first, text), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if "\x00" in stripped:
            yield Rejected(line, "nul_byte", stripped.replace("\x00", "\\0"))
            continue
        try:
            obj = json.loads(stripped, parse_float=str, parse_int=str)
        except ValueError:
            yield Rejected(line, "invalid_json", stripped)
            continue
        if not isinstance(obj, dict):
            yield Rejected(line, "invalid_json", stripped)
        elif set(obj) == {"control"} and isinstance(obj["control"], dict):
            control = obj["control"]
            yield _control_csv(line, ["#control", str(control.get("metric", "")), str(control.get("records", "")),
                                      str(control.get("quantity", ""))], stripped)
        elif any(isinstance(value, dict | list) for value in obj.values()):
            yield Rejected(line, "nested_value", stripped, str(obj.get("id", ""))[:MAX_TEXT])
        else:
            yield record_parse(line, obj, stripped)


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest
