"""Collects one row per bad-input case and prints the table at the end of the run
(also written to var/bad-inputs.md, the source of the table in docs/reliability.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

RESULTS: list[dict] = []
ROOT = Path(__file__).resolve().parents[2]


def table() -> str:
    lines = ["| case | expected | got | rows stored | exception opened | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in RESULTS:
        lines.append(f"| {row['case']} | {row['expected']} | {row['got']} | {row['rows']} | "
                     f"{row['exception']} | {row['verdict']} |")
    fivexx = sum(1 for row in RESULTS if isinstance(row["got"], int) and row["got"] >= 500)
    forged = sum(1 for row in RESULTS if row["forged"] and row["rows"])
    lost = sum(1 for row in RESULTS if row["valid"] and not row["rows"])
    failed = sum(1 for row in RESULTS if row["verdict"] != "ok")
    lines += ["", f"{len(RESULTS)} cases: {fivexx} × 5xx, {forged} forged or stale requests stored, "
                  f"{lost} valid events lost, {failed} not as expected."]
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    text = table()
    terminalreporter.write_sep("=", "bad-input table")
    terminalreporter.write_line(text)
    out = ROOT / "var" / "bad-inputs.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n\n{text}\n")
