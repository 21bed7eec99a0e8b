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
from collections.abc import Callable, Iterable, Iterator, Mapping
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
_MICROSECOND = dt.timedelta(microseconds=1)
_json_text = json.encoder.encode_basestring  # type: ignore[attr-defined]  # what json.dumps(ensure_ascii=False) writes

# A record as the stage takes it: (line, event_id, subscription, metric, quantity in
# millionths, occurred_at as UTC ISO 8601 text, its day and month (ISO dates), dimensions
# JSON text or "", digest). The CSV fast path yields these directly; ``Record.staged()``
# gives the same for the others.
Staged = tuple[int, str, str, str, int, str, str, str, str, str]


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

    def staged(self) -> Staged:
        return (self.line, self.event_id, self.subscription, self.metric, self.quantity,
                self.occurred_at.isoformat(), self.day.isoformat(), self.period.isoformat(), self.dimensions,
                self.digest)

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
    except (ValueError, OverflowError):  # not a date, or out of range once in UTC (0001-01-01T00:00+01:00)
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


def file_rows(stream: IO[bytes]) -> Iterator[Staged | Record | Rejected | Control]:
    """Every row of a usage file, in line order (a CSV's good records as ``Staged``
    tuples, a JSON line's as ``Record``)."""
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


def _csv_rows(header_line: str, text: io.TextIOBase) -> Iterator[Staged | Record | Rejected | Control]:
    """CSV rows. A physical line without a quote is split on commas (what the csv module
    would make of it); a line with a quote goes to the csv module, which reads on while
    a quoted field spans lines. A record takes the fast path (``_csv_record``) or, for
    anything unusual, ``record_parse`` — which decides every rejection."""
    header = [name.strip() for name in next(csv.reader([header_line]))]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise FileRefused(f"the header lacks {', '.join(missing)} (it has: {', '.join(header)[:300]})")
    if len(set(header)) != len(header):
        raise FileRefused("the header names a column twice")
    width = len(header)
    fast = _csv_record(header)
    lines = iter(text)
    line = 2  # the line the next record starts on
    for physical in lines:
        start = line
        line += 1
        if '"' in physical:
            consumed = [physical]

            def source(first: str = physical, consumed: list[str] = consumed) -> Iterator[str]:
                yield first
                for more in lines:
                    consumed.append(more)
                    yield more

            fields = next(csv.reader(source()), [])
            line += len(consumed) - 1
            raw = "".join(consumed).rstrip("\r\n")
        else:
            raw = physical.rstrip("\r\n")
            fields = raw.split(",") if raw else []
        if not fields:
            continue  # a blank line
        if fields[0].startswith("#control"):
            yield _control_csv(start, fields, raw)
        elif len(fields) != width:
            yield Rejected(start, "wrong_column_count", raw, fields[0].strip()[:MAX_TEXT])
        else:
            yield fast(start, fields, raw) or record_parse(start, dict(zip(header, fields, strict=True)), raw)


def _csv_record(header: list[str]) -> Callable[[int, list[str], str], Staged | None]:
    """The fast path of a CSV record: the common shape (clean text with nothing COPY's
    text format would escape, a plain non-negative quantity, an RFC 3339 timestamp with an
    offset) → its stage row; anything else → None (and ``record_parse`` decides). Both
    give the same row for what the fast path takes."""
    at = {name: index for index, name in enumerate(header)}
    i_id, i_sub, i_metric, i_quantity, i_time = (at[name] for name in REQUIRED)
    dimensions = [(_json_text(name) + ":", at[name]) for name in sorted(header) if name not in REQUIRED]
    if any("\x00" in name or "\ufffd" in name for name in header):
        return lambda line, fields, raw: None
    parse_time, match_time, epoch, micro = dt.datetime.fromisoformat, _RFC3339.match, _EPOCH_START, _MICROSECOND
    md5, utc = hashlib.md5, dt.UTC
    times: dict[str, tuple[str, int, str, str]] = {}  # timestamps repeat in usage files: parsed once each (bounded)

    def record(line: int, fields: list[str], raw: str) -> Staged | None:
        event_id, subscription, metric = fields[i_id].strip(), fields[i_sub].strip(), fields[i_metric].strip()
        if (not event_id or not subscription or not metric or len(event_id) > MAX_TEXT
                or len(subscription) > MAX_TEXT or len(metric) > 100 or "\x00" in raw or "\ufffd" in raw
                or "\\" in raw or "\t" in raw or "\n" in raw or "\r" in raw):
            return None
        whole, dot, fraction = fields[i_quantity].strip().partition(".")
        if not whole.isdecimal() or dot and not fraction.isdecimal() or len(whole) > 13:
            return None
        fraction = fraction.rstrip("0")
        units = int(whole)
        if len(fraction) > SCALE or units >= MAX_QUANTITY_UNITS:
            return None
        quantity = units * 1_000_000 + (int(fraction.ljust(SCALE, "0")) if fraction else 0)
        stamp_text = fields[i_time].strip()
        known = times.get(stamp_text)
        if known is None:
            match = match_time(stamp_text)
            if match is None or match.group(1) is None:
                return None
            try:
                occurred = parse_time(stamp_text.replace("z", "Z").replace("t", "T")).astimezone(utc)
            except (ValueError, OverflowError):
                return None
            if len(stamp_text) == 20 and stamp_text[19] == "Z" and stamp_text[10] == "T":
                occurred_text = stamp_text  # already UTC, in a form PostgreSQL reads as is
            else:
                occurred_text = occurred.isoformat()
            if len(times) >= 4096:
                times.clear()
            day = occurred.date()
            known = times[stamp_text] = (occurred_text, (occurred - epoch) // micro, day.isoformat(),
                                         day.replace(day=1).isoformat())
        occurred_text, stamp, day_text, period_text = known
        if dimensions:
            parts = [key + _json_text(fields[index]) for key, index in dimensions if fields[index] != ""]
            dims = "{" + ",".join(parts) + "}" if parts else ""
            if "\\" in dims:
                return None  # a control character, escaped in JSON: not COPY-clean
        else:
            dims = ""
        digest = md5(f"{subscription}\x1f{metric}\x1f{quantity}\x1f{stamp}\x1f{dims}".encode(),
                     usedforsecurity=False).hexdigest()
        return (line, event_id, subscription, metric, quantity, occurred_text, day_text, period_text, dims, digest)

    return record


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
