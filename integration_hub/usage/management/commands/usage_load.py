"""manage.py usage_load FILE — load a usage file from the shell, with a progress bar."""

from __future__ import annotations

import os
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from integration_hub.usage import services
from integration_hub.usage.models import UsageBatch


class Progress:
    """A one-line progress bar on stderr: rows read, and how far through the file."""

    def __init__(self, stream, size: int):
        self.stream, self.size, self.rows, self.started = stream, size, 0, time.monotonic()

    def __call__(self, rows: int) -> None:
        self.rows += rows
        try:
            done = min(self.stream.tell() / self.size, 1.0) if self.size else 1.0
        except ValueError:  # the reader closed the file: it has been read to the end
            done = 1.0
        bar = "#" * int(done * 30)
        rate = self.rows / max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(f"\r[{bar:<30}] {done:6.1%} {self.rows:>12,} rows {rate:>10,.0f} rows/s")
        sys.stderr.flush()


class Command(BaseCommand):
    help = "Load a usage file (CSV with a header or JSON lines, gzip accepted) as a batch, in this process."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file: str, **options):
        if not os.path.isfile(file):
            raise CommandError(f"{file}: no such file")
        with open(file, "rb") as stream:
            batch = services.batch_receive(stream=stream, filename=file, source=UsageBatch.Source.SHELL, load=False)
        with open(batch.file_path, "rb") as stored:
            progress = Progress(stored, os.path.getsize(batch.file_path))
            from integration_hub.usage.rows import file_rows

            rows = services._guarded(file_rows(stored))
            batch = services.batch_load_rows(batch, rows, progress=progress)
        sys.stderr.write("\n")
        counts = ", ".join(f"{name} {getattr(batch, name):,}" for name in UsageBatch.COUNT_FIELDS)
        self.stdout.write(f"batch #{batch.pk} {batch.status}: {counts}")
        if batch.status == UsageBatch.Status.FAILED:
            raise CommandError(batch.error)
