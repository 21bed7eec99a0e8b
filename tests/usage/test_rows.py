"""The CSV fast path gives, for every row it takes, exactly what ``record_parse`` gives
(it hands everything unusual to ``record_parse``), and what it hands to the stage holds
nothing COPY's text format would escape."""

import datetime as dt
import io

from integration_hub.usage.rows import Record, Rejected, file_rows, record_parse

HEADER = "id,subscription,metric,quantity,timestamp,region,site"
ROWS = [
    "e1,sub_1,api_calls,1.5,2025-01-15T10:00:00Z,eu,",
    "e2, sub_1 ,api_calls,0002.500000,2025-01-15T10:00:00Z,,b",
    "e3,sub_1,api_calls,7,2025-01-15T12:30:00+02:00,eu,b",
    "e4,sub_1,api_calls,7,2025-01-15t10:00:00.123456z,eu,b",
    "e5,sub_1,api_calls,7,1736935200,eu,b",
    "e6,sub_1,api_calls,-0,2025-01-15T10:00:00Z,eu,b",
    "e7,sub_1,api_calls,-1,2025-01-15T10:00:00Z,eu,b",
    "e8,sub_1,api_calls,1.1234567,2025-01-15T10:00:00Z,eu,b",
    "e9,sub_1,api_calls,9000000000000,2025-01-15T10:00:00Z,eu,b",
    "e10,sub_1,api_calls,١٢,2025-01-15T10:00:00Z,eu,b",
    "e11,sub_1,api_calls,²,2025-01-15T10:00:00Z,eu,b",
    "e12,sub_1,api_calls,1.,2025-01-15T10:00:00Z,eu,b",
    "e13,sub_1,api_calls,.5,2025-01-15T10:00:00Z,eu,b",
    "e14,sub_1,api_calls,1,2025-01-15T10:00:00,eu,b",
    "e15,sub_1,api_calls,1,2025-02-30T10:00:00Z,eu,b",
    "e16,sub_1,api_calls,1,2025-01-15T23:59:60Z,eu,b",
    "e17,sub_1,api_calls,1,2025-01-15T10:00:00Z,tab\there,b",
    "e\\18,sub_1,api_calls,1,2025-01-15T10:00:00Z,eu,b",
    "e19,sub_1,api_calls,1,2025-01-15T10:00:00Z,ctl\x01x,b",
    "e20,sub_1,api_calls,1,2025-01-15T10:00:00Z,Zürich,東京",
    ",sub_1,api_calls,1,2025-01-15T10:00:00Z,eu,b",
    "e22,,api_calls,1,2025-01-15T10:00:00Z,eu,b",
    "e23,sub_1,,1,2025-01-15T10:00:00Z,eu,b",
    "e24,sub_1,api_calls,1,2025-01-15T10:00:00Z,nul\x00,b",
    "e25,sub_1,api_calls,1,2025-01-15T10:00:00Z,eu,b,extra",
    'e26,sub_1,api_calls,1,2025-01-15T10:00:00Z,"quoted, comma","multi\nline"',
    "e27,sub_1,api_calls,1,0001-01-01T00:00:00+00:01,eu,b",
]


def _expected(line: int, text: str):
    fields = next(iter(__import__("csv").reader([text])))
    header = HEADER.split(",")
    if len(fields) != len(header):
        return "wrong_column_count"
    return record_parse(line, dict(zip(header, fields, strict=True)), text)


def test_the_fast_path_agrees_with_record_parse_on_every_row():
    content = HEADER + "\n" + "\n".join(ROWS) + "\n"
    rows = list(file_rows(io.BytesIO(content.encode())))
    assert len(rows) == len(ROWS)
    line = 2
    for text, row in zip(ROWS, rows, strict=True):
        expected = _expected(line, text)
        if isinstance(row, tuple):
            assert isinstance(expected, Record), text
            staged = expected.staged()
            assert row[:5] + row[6:] == staged[:5] + staged[6:], text
            assert dt.datetime.fromisoformat(row[5].replace("Z", "+00:00")) == expected.occurred_at, text
            assert not any(ch in value for value in row[1:] if isinstance(value, str) for ch in "\\\t\n\r"), text
        elif isinstance(row, Record):
            assert row == expected, text
        else:
            assert isinstance(row, Rejected), text
            assert row.reason == (expected if isinstance(expected, str) else expected.reason), text
        assert (row[0] if isinstance(row, tuple) else row.line) == line, text
        line += text.count("\n") + 1


def test_a_record_with_a_tab_or_backslash_loads_as_written(load, known):
    from integration_hub.usage.models import UsageRecord

    known("sub_1")
    batch = load(HEADER + "\ne\\1,sub_1,api_calls,1,2025-01-15T10:00:00Z,tab\there,ctl\x01x\n"
                 "e2,sub_1,api_calls,1,2025-01-15T10:00:00Z,eu,b\n")
    assert (batch.loaded, batch.rejected) == (2, 0)
    record = UsageRecord.objects.get(event_id="e\\1")
    assert record.dimensions == {"region": "tab\there", "site": "ctl\x01x"}
