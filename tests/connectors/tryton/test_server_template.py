"""The Tryton template on PostgreSQL is built once per server: a checkout that finds a
finished build (its setup JSON in the database's comment) adopts it, one that finds an
unfinished one builds again."""

import json
import uuid

import pytest
from django.db import connection

from connectors.tryton import server
from tests.conftest import _database_url

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the template database lives on PostgreSQL"),
]

INFO = {"companies": {"US": 1}, "database": "template"}


class BuildStarted(Exception):
    pass


@pytest.fixture
def key(monkeypatch):
    key = f"test{uuid.uuid4().hex[:12]}"
    monkeypatch.setattr(server, "template_key", lambda: key)

    def no_build(name):
        raise BuildStarted(name)

    monkeypatch.setattr(server, "_binary", no_build)
    return key


@pytest.fixture
def postgres():
    return _database_url(connection.settings_dict).rsplit("/", 1)[0].replace("postgres://", "postgresql://", 1)


@pytest.fixture
def template_database(key, postgres):
    name = f"tryton_template_{key}"
    server._pg_create(postgres, name)
    yield name
    server._pg_drop(postgres, name)


def test_a_template_built_from_another_checkout_is_adopted(tmp_path, postgres, template_database):
    server._pg_set_comment(postgres, template_database, json.dumps(INFO))

    target = server.build_template(tmp_path, postgres=postgres, progress=lambda _: None)

    assert target == tmp_path / f"{template_database}.postgresql" and target.exists()
    assert json.loads(target.with_suffix(".json").read_text()) == INFO


def test_a_template_database_without_its_comment_is_built_again(tmp_path, postgres, template_database):
    with pytest.raises(BuildStarted):
        server.build_template(tmp_path, postgres=postgres, progress=lambda _: None)
    assert not (tmp_path / f"{template_database}.postgresql").exists()
