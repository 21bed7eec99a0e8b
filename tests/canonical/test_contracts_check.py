"""The contracts compatibility check: the published schemas against the code. Each
breaking case fails unless the version goes up; the repository's own contracts pass."""

from typing import ClassVar, Literal

import pytest
from django.core.management import CommandError, call_command
from pydantic import BaseModel, ConfigDict, Field

from canonical.compat import contracts_check
from canonical.contracts import Contract
from canonical.schemas_io import BreakingChange, schemas_publish


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    weight: int | None = None


class WidgetV1(Contract):
    name: ClassVar[str] = "widget"
    version: ClassVar[int] = 1

    sku: str = Field(max_length=20)
    amount: int
    colour: Literal["red", "blue"] = "red"
    note: str | None = None
    parts: tuple[Part, ...] = ()


@pytest.fixture
def published(tmp_path):
    schemas_publish(contracts=[WidgetV1], schema_dir=tmp_path)
    return tmp_path


def widget(version: int = 1, **fields):
    """A widget contract as the code might change it: ``fields`` replace WidgetV1's
    (None removes one)."""
    annotations = {k: v for k, v in WidgetV1.__annotations__.items() if k not in ("name", "version")}
    defaults = {"sku": Field(max_length=20), "colour": "red", "note": None, "parts": ()}
    namespace: dict = {"__annotations__": {"name": ClassVar[str], "version": ClassVar[int]},
                       "name": "widget", "version": version}
    for field, annotation in annotations.items():
        if field in fields:
            if fields[field] is None:
                continue
            annotation, *default = fields[field]
            namespace["__annotations__"][field] = annotation
            if default:
                namespace[field] = default[0]
            continue
        namespace["__annotations__"][field] = annotation
        if field in defaults:
            namespace[field] = defaults[field]
    for field, spec in fields.items():
        if field not in annotations and spec is not None:
            namespace["__annotations__"][field] = spec[0]
            if len(spec) > 1:
                namespace[field] = spec[1]
    return type(f"WidgetV{version}", (Contract,), namespace)


def check(contracts, schema_dir):
    return contracts_check(contracts, schema_dir)


def test_the_repository_contracts_match_their_published_schemas():
    call_command("contracts_check")  # raises CommandError on any failure


def test_unchanged_and_compatible_changes_pass(published):
    assert check([WidgetV1], published) == ([], [])
    failures, notes = check([widget(size=(int | None, None), sku=(str, Field(max_length=40)))], published)
    assert failures == [] and notes == ["widget.v1: compatible changes not yet published; run `make schemas`"]


def test_a_removed_field_fails(published):
    failures, _ = check([widget(note=None)], published)
    assert failures == ["widget.v1: field note removed; a breaking change needs a new version (v2), "
                        "published beside v1"]


def test_a_retyped_field_fails_at_any_depth(published):
    failures, _ = check([widget(amount=(str,))], published)
    assert failures[0].startswith("widget.v1: field amount retyped")

    class Component(BaseModel):  # renamed (no change in itself), and its code retyped
        code: int
        weight: int | None = None

    failures, _ = check([widget(parts=(tuple[Component, ...], ()))], published)
    assert len(failures) == 1 and failures[0].startswith("widget.v1: field parts[].code retyped")


def test_narrowing_an_enum_fails(published):
    failures, _ = check([widget(colour=(Literal["red"], "red"))], published)
    assert failures[0].startswith("widget.v1: field colour no longer allows ['\"blue\"']")


def test_a_new_required_field_fails(published):
    failures, _ = check([widget(owner=(str,))], published)
    assert failures == ["widget.v1: field owner is newly required; a breaking change needs a new version (v2), "
                        "published beside v1"]
    failures, _ = check([widget(note=(str,))], published)  # an optional field made required (and not null)
    assert [f.split(";")[0] for f in failures] == ["widget.v1: field note retyped: null | string -> string",
                                                    "widget.v1: field note is newly required"]


def test_a_lowered_version_fails(published):
    schemas_publish(contracts=[widget(2)], schema_dir=published)
    failures, _ = check([WidgetV1], published)
    assert failures == ["widget: version lowered to v1; v2 is published"]


def test_an_unpublished_version_fails(published):
    failures, _ = check([widget(2, note=None)], published)
    assert failures == ["widget.v2: not published; run `make schemas` and commit canonical/schemas/widget.v2.json"]


def test_a_breaking_change_passes_once_the_version_goes_up_and_is_published(published):
    breaking = widget(2, note=None, owner=(str,))
    schemas_publish(contracts=[breaking], schema_dir=published)
    assert sorted(p.name for p in published.iterdir()) == ["widget.v1.json", "widget.v2.json"]
    assert check([breaking], published) == ([], [])


def test_a_removed_contract_fails(published):
    failures, _ = check([], published)
    assert failures == ["widget: published, but the code has no widget contract any more"]


def test_publishing_refuses_to_overwrite_a_version_with_a_breaking_change(published):
    before = (published / "widget.v1.json").read_text()
    with pytest.raises(BreakingChange, match="field note removed"):
        schemas_publish(contracts=[widget(note=None)], schema_dir=published)
    assert (published / "widget.v1.json").read_text() == before


def test_the_command_fails_with_the_reasons(monkeypatch):
    monkeypatch.setattr("canonical.management.commands.contracts_check.contracts_check",
                        lambda: (["price.v1: field amount removed"], []))
    with pytest.raises(CommandError, match="price.v1: field amount removed"):
        call_command("contracts_check")
