"""The ECB's euro foreign exchange reference rates (eurofxref), pure functions.

The ECB publishes, on TARGET working days around 16:00 CET, one rate per currency:
units of the currency per 1 euro, in three files of one shape
(``https://www.ecb.europa.eu/stats/eurofxref/``):

* ``eurofxref-daily.xml`` — the latest day only;
* ``eurofxref-hist-90d.xml`` — the last 90 days, newest first;
* ``eurofxref-hist.xml`` — every day since 1999-01-04, newest first.

Each is a ``gesmes:Envelope`` whose ``Cube`` (namespace
``http://www.ecb.int/vocabulary/2002-08-01/eurofxref``) holds one ``Cube time=`` per
day, each with ``Cube currency= rate=`` children. Days without publication (week-ends,
TARGET holidays) are absent: the rate for such a date is the last one published
before it — which is also how Tryton reads rates (latest on or before the date).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from xml.etree import ElementTree as ET

from connectors.base import ReferenceRates
from connectors.errors import Permanent

GESMES = "http://www.gesmes.org/xml/2002-08-01"
EUROFXREF = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
CUBE = f"{{{EUROFXREF}}}Cube"
FIRST_DAY = dt.date(1999, 1, 4)


def days_parse(xml: bytes) -> dict[dt.date, dict[str, Decimal]]:
    """Every day in an eurofxref document: ``{date: {currency: rate}}``. Raises
    Permanent for a document that is not one (the source answered something else)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise Permanent(f"the ECB answer is not XML: {exc}") from None
    days: dict[dt.date, dict[str, Decimal]] = {}
    for cube in root.iter(CUBE):
        if "time" not in cube.attrib:
            continue
        try:
            day = dt.date.fromisoformat(cube.attrib["time"])
            days[day] = {child.attrib["currency"]: Decimal(child.attrib["rate"]) for child in cube}
        except (KeyError, ValueError, InvalidOperation) as exc:
            raise Permanent(f"the ECB answer has a malformed Cube {cube.attrib}: {exc!r}") from None
    if not days and root.tag != f"{{{GESMES}}}Envelope":
        raise Permanent("the ECB answer is not an eurofxref envelope")
    return days


def rates_on(days: Mapping[dt.date, Mapping[str, Decimal]], on: dt.date) -> ReferenceRates | None:
    """The rates in force on ``on``: the last day published on or before it."""
    published = [day for day in days if day <= on]
    if not published:
        return None
    day = max(published)
    return ReferenceRates(date=day, rates=dict(days[day]))


def envelope(days: Mapping[dt.date, Mapping[str, Decimal]]) -> bytes:
    """An eurofxref document for ``days`` (newest first), as the ECB writes it."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<gesmes:Envelope xmlns:gesmes="{GESMES}" xmlns="{EUROFXREF}">',
        "\t<gesmes:subject>Reference rates</gesmes:subject>",
        "\t<gesmes:Sender>",
        "\t\t<gesmes:name>European Central Bank</gesmes:name>",
        "\t</gesmes:Sender>",
        "\t<Cube>",
    ]
    for day in sorted(days, reverse=True):
        lines.append(f"\t\t<Cube time='{day.isoformat()}'>")
        lines.extend(f"\t\t\t<Cube currency='{code}' rate='{rate}'/>" for code, rate in days[day].items())
        lines.append("\t\t</Cube>")
    lines += ["\t</Cube>", "</gesmes:Envelope>", ""]
    return "\n".join(lines).encode()
