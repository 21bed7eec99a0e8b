import pytest

from connectors.services import connection_upsert, connector_for


@pytest.mark.django_db
def test_a_connector_is_reused_until_its_connection_changes(memory_erp, monkeypatch):
    from connectors.models import Connection

    connection = Connection.objects.get(name="erp")
    first = connector_for(connection)
    assert connector_for(Connection.objects.get(pk=connection.pk)) is first

    closed = []
    monkeypatch.setattr(first, "close", lambda: closed.append(True))
    rotated = connection_upsert(name="erp", vendor="memory-erp", role="erp", config={"x": 1}, credentials={"k": "new"})
    second = connector_for(rotated)

    assert second is not first and closed == [True]
    assert second.config == {"x": 1} and second.credentials == {"k": "new"}
