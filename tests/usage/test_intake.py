"""The three ways in share one path: the API (streamed, gzip), the admin upload, the shell."""

import gzip

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from integration_hub.usage.models import UsageBatch
from integration_hub.usage.services import LOAD_TASK, batch_load
from tests.usage.conftest import csv_file

T = "2025-01-15T10:00:00Z"


def test_the_api_streams_a_gzip_body_to_storage_and_queues_the_load(api, known, sent_tasks,
                                                                     django_capture_on_commit_callbacks):
    known("sub_1")
    body = gzip.compress(csv_file(f"e1,sub_1,m,1,{T}", f"e2,sub_1,m,x,{T}").encode())
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/usage/batches/?filename=jan.csv.gz", data=body, content_type="text/csv",
                            HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 202 and response.json()["status"] == "received"
    batch_id = response.json()["id"]
    assert (LOAD_TASK, batch_id, None) in sent_tasks
    batch_load(batch_id)
    detail = api.get(f"/api/usage/batches/{batch_id}/").json()
    assert detail["status"] == "loaded" and detail["filename"] == "jan.csv.gz"
    assert {k: detail["counts"][k] for k in ("read", "loaded", "rejected")} == {"read": 2, "loaded": 1, "rejected": 1}


def test_the_api_needs_a_token(client):
    assert client.post("/api/usage/batches/", data=b"x", content_type="text/csv").status_code in (401, 403)


def test_reconciliation_requests_need_a_period(api):
    assert api.post("/api/reconciliations/", {"period": "Jan"}, format="json").status_code == 400


def test_the_admin_upload_form_receives_a_batch(admin_client, sent_tasks, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("u.csv", csv_file(f"e1,sub_1,m,1,{T}").encode())
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/usage/usagebatch/upload/", {"file": upload})
    assert response.status_code == 302
    batch = UsageBatch.objects.get()
    assert (batch.source, batch.filename, batch.status) == ("admin", "u.csv", "received")
    assert admin_client.get("/admin/usage/usagebatch/").status_code == 200


def test_usage_load_from_the_shell_shows_progress_and_counts(db, known, tmp_path, capsys):
    known("sub_1")
    path = tmp_path / "u.csv"
    path.write_text(csv_file(f"e1,sub_1,m,1,{T}", f"e1,sub_1,m,1,{T}"))
    call_command("usage_load", str(path))
    out, err = capsys.readouterr()
    assert "loaded 1" in out and "duplicates 1" in out and "rows/s" in err


def test_the_drop_folder_takes_each_file_once(db, settings, tmp_path, sent_tasks):
    from integration_hub.usage.services import drop_folder_scan

    settings.HUB_USAGE_DROP_DIR = str(tmp_path / "drop")
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text(csv_file(f"e1,sub_1,m,1,{T}"))
    (tmp_path / "drop" / ".b.csv.part").write_text("still uploading")
    assert len(drop_folder_scan()) == 1 and drop_folder_scan() == []
    assert UsageBatch.objects.get().source == "drop_folder"


def test_rows_from_a_pull_go_through_the_same_rules(db, known):
    import io

    from integration_hub.usage.services import batch_receive, rows_load

    known("sub_1")
    batch = batch_receive(stream=io.BytesIO(b""), filename="pull", source="pull", load=False)
    rows_load(batch, [{"id": "p1", "subscription": "sub_1", "metric": "m", "quantity": "2", "timestamp": T},
                      {"id": "p2", "subscription": "sub_1", "metric": "m", "quantity": "-1", "timestamp": T}])
    batch.refresh_from_db()
    assert (batch.loaded, batch.rejected) == (1, 1) and batch.rejects.get().reason == "negative_quantity"
