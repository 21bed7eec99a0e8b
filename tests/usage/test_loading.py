"""The counting rules of a usage load, on small files (run on PostgreSQL in CI: COPY,
partitions, the one INSERT … ON CONFLICT; on SQLite: batched inserts)."""

import gzip

from django.db import connection

from integration_hub.runtime.models import ExceptionRecord
from integration_hub.usage.models import UsageConflict, UsageRecord
from tests.usage.conftest import csv_file

T = "2025-01-15T10:00:00Z"


def counts(batch):
    return {name: getattr(batch, name) for name in ("read", "loaded", "duplicates", "conflicts", "unmatched",
                                                     "rejected")}


def test_a_clean_file_loads_every_record(load, known):
    known("sub_1")
    batch = load(csv_file(f"e1,sub_1,api_calls,1.5,{T}", f"e2,sub_1,api_calls,2,{T}"))
    assert batch.status == "loaded"
    assert counts(batch) == {"read": 2, "loaded": 2, "duplicates": 0, "conflicts": 0, "unmatched": 0, "rejected": 0}
    assert sorted(UsageRecord.objects.values_list("event_id", "quantity")) == [("e1", 1_500_000), ("e2", 2_000_000)]
    assert not ExceptionRecord.objects.exists()


def test_the_same_file_twice_is_all_duplicates_the_second_time(load, known):
    known("sub_1")
    content = csv_file(f"e1,sub_1,api_calls,1.5,{T}", f"e2,sub_1,api_calls,2,{T}")
    load(content)
    again = load(content)
    assert counts(again) == {"read": 2, "loaded": 0, "duplicates": 2, "conflicts": 0, "unmatched": 0, "rejected": 0}
    assert UsageRecord.objects.count() == 2


def test_the_same_id_with_other_content_is_a_conflict_and_the_first_stays(load, known):
    known("sub_1")
    first = load(csv_file(f"e1,sub_1,api_calls,1.5,{T}"))
    later = load(csv_file(f"e1,sub_1,api_calls,9,{T}", f"e1,sub_1,api_calls,1.5,{T}"))
    assert (later.loaded, later.conflicts, later.duplicates) == (0, 1, 1)
    assert UsageRecord.objects.get(event_id="e1").quantity == 1_500_000  # never overwritten
    conflict = UsageConflict.objects.get()
    assert (conflict.line, conflict.first_batch_id, conflict.first_line, conflict.quantity) == (
        2, first.pk, 2, 9_000_000)
    record = ExceptionRecord.objects.get(category="conflict")
    assert record.owner_team == "product_operations" and "'e1' at line 2" in record.detail


def test_within_one_file_the_first_line_wins(load, known):
    known("sub_1")
    batch = load(csv_file(f"e1,sub_1,api_calls,1,{T}", f"e1,sub_1,api_calls,1,{T}", f"e1,sub_1,api_calls,5,{T}"))
    assert (batch.loaded, batch.duplicates, batch.conflicts) == (1, 1, 1)
    assert UsageRecord.objects.get(event_id="e1").line == 2
    assert UsageConflict.objects.get().line == 4


def test_bad_rows_are_rejected_with_line_and_reason_and_the_rest_loads(load, known, api):
    known("sub_1")
    batch = load(csv_file(
        f"e1,sub_1,api_calls,abc,{T}",
        f"e2,sub_1,api_calls,-2,{T}",
        "e3,sub_1,api_calls,1,yesterday",
        "e4,sub_1,api_calls,1,2025-01-15T10:00:00",
        f",sub_1,api_calls,1,{T}",
        f"e6,sub_1,,1,{T}",
        f"e7,sub_1,api_calls,1\x00,{T}",
        f"e8,sub_1,api_calls,0.0000001,{T}",
        "e9,sub_1,api_calls,1,2025-02-30T00:00:00Z",
        f"e10,sub_1,api_calls,1,{T},extra",
        f"ok,sub_1,api_calls,1,{T}",
    ))
    assert (batch.read, batch.loaded, batch.rejected) == (11, 1, 10)
    assert list(batch.rejects.values_list("line", "reason")) == [
        (2, "invalid_quantity"), (3, "negative_quantity"), (4, "invalid_timestamp"), (5, "timestamp_without_offset"),
        (6, "missing_id"), (7, "missing_metric"), (8, "nul_byte"), (9, "quantity_precision"),
        (10, "invalid_timestamp"), (11, "wrong_column_count")]
    response = api.get(f"/api/usage/batches/{batch.pk}/rejects.csv")
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "line,reason,id,row" and lines[1] == f'2,invalid_quantity,e1,"e1,sub_1,api_calls,abc,{T}"'
    assert ExceptionRecord.objects.get(category="mapping").summary.endswith("10 row(s) rejected")


def test_bom_crlf_quoted_commas_and_non_ascii_dimensions(load, known):
    known("sub_1")
    content = "\ufeff" + csv_file(f'e1,sub_1,api_calls,3,{T},"Zürich, CH",東京',
                                  header="id,subscription,metric,quantity,timestamp,region,site", newline="\r\n")
    batch = load(content)
    assert (batch.loaded, batch.rejected) == (1, 0)
    assert UsageRecord.objects.get().dimensions == {"region": "Zürich, CH", "site": "東京"}


def test_gzip_json_lines_epoch_seconds_and_offsets(load, known):
    known("sub_1")
    body = "\n".join([
        '{"id": "j1", "subscription": "sub_1", "metric": "gb", "quantity": "0.25", "timestamp": 1736935200}',
        '{"id": "j2", "subscription": "sub_1", "metric": "gb", "quantity": 1.75, "timestamp": "2025-01-15T12:00:00+02:00"}',
        '{"id": "j3", "subscription": "sub_1"',
    ]).encode()
    batch = load(gzip.compress(body), filename="usage.jsonl.gz")
    assert (batch.loaded, batch.rejected) == (2, 1)
    assert batch.rejects.get().reason == "invalid_json"
    assert str(UsageRecord.objects.get(event_id="j2").occurred_at) == "2025-01-15 10:00:00+00:00"


def test_a_json_escaped_nul_is_rejected_like_a_raw_one(load, known):
    """JSON's "\\u0000" decodes to a NUL, which PostgreSQL text cannot hold: the row is
    rejected as nul_byte, in a value or in a dimension's name, and the rest loads."""
    known("sub_1")
    body = "\n".join([
        '{"id": "n1", "subscription": "sub_1", "metric": "gb\\u0000", "quantity": "1", "timestamp": 1736935200}',
        '{"id": "n2", "subscription": "sub_1", "metric": "gb", "quantity": "1", "timestamp": 1736935200, '
        '"re\\u0000gion": "eu"}',
        '{"id": "n3", "subscription": "sub_1", "metric": "gb", "quantity": "1", "timestamp": 1736935200}',
    ]).encode()
    batch = load(body, filename="usage.jsonl")
    assert (batch.read, batch.loaded, batch.rejected) == (3, 1, 2)
    assert list(batch.rejects.values_list("line", "reason")) == [(1, "nul_byte"), (2, "nul_byte")]
    assert list(UsageRecord.objects.values_list("event_id", flat=True)) == ["n3"]


def test_usage_for_an_unknown_subscription_is_held_and_matched_when_it_arrives(load, known):
    from integration_hub.usage.services import subscriptions_match

    batch = load(csv_file(f"e1,sub_new,api_calls,1,{T}", f"e2,sub_new,api_calls,1,{T}"))
    assert (batch.loaded, batch.unmatched) == (2, 2)
    known("sub_new")
    assert subscriptions_match() == 2
    batch.refresh_from_db()
    assert batch.unmatched == 0 and UsageRecord.objects.filter(matched=True).count() == 2


def test_control_totals_are_checked(load, known):
    known("sub_1")
    good = load(csv_file(f"e1,sub_1,api_calls,1.5,{T}", f"e2,sub_1,api_calls,2,{T}", "#control,api_calls,2,3.5"))
    assert good.control_result[0]["ok"] and not ExceptionRecord.objects.exists()
    bad = load(csv_file(f"e3,sub_1,api_calls,1.5,{T}", "#control,api_calls,2,3.5"))
    assert not bad.control_result[0]["ok"]
    assert "expected 2 records / 3.5, found 1 / 1.5" in ExceptionRecord.objects.get(category="reconciliation").detail


def test_a_file_without_the_required_columns_is_refused_as_a_whole(load):
    batch = load("id,sub,quantity\n1,2,3\n")
    assert batch.status == "failed" and "subscription, metric, timestamp" in batch.error
    assert ExceptionRecord.objects.get().category == "mapping"


def test_an_interrupted_load_started_again_counts_each_record_once(load, known, monkeypatch, settings):
    import pytest

    from integration_hub.usage import loading, services

    known("sub_1")
    content = csv_file(*(f"e{n},sub_1,api_calls,1,{T}" for n in range(10)))
    settings.HUB_USAGE_LOAD_CHUNK = 3
    original = loading.stage_commit

    def die(*args, **kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(loading, "stage_commit", die)
    with pytest.raises(SystemExit):
        load(content)
    from integration_hub.usage.models import UsageBatch

    batch = UsageBatch.objects.get()
    assert batch.status == "loading" and batch.read == 10 and UsageRecord.objects.count() == 0
    monkeypatch.setattr(loading, "stage_commit", original)
    services.batch_load(batch.pk)
    batch.refresh_from_db()
    assert (batch.read, batch.loaded, batch.duplicates) == (10, 10, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM usage_stage")
        assert cursor.fetchone()[0] == 0


def test_records_land_in_monthly_partitions_on_postgresql(load, known):
    known("sub_1")
    load(csv_file(f"e1,sub_1,m,1,{T}", "e2,sub_1,m,1,2025-02-01T00:00:00Z"))
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text, event_id FROM usage_record ORDER BY event_id")
        assert cursor.fetchall() == [("usage_record_y2025m01", "e1"), ("usage_record_y2025m02", "e2")]
