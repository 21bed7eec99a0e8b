"""Catalog versions: the one write path for products and prices from the platform.

A pulled item becomes a new *draft* version only when its content changed (a hash of
the canonical contract, not the platform's ``updated_at``); the versions before it
stay as history. A newer draft replaces an older one still waiting (the older one is
superseded: it never reached anyone). Decisions (approve, reject) and releases are
state transitions guarded here; who may decide is the caller's check.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from canonical.contracts import PriceV1, ProductV1
from canonical.models import CatalogVersion, Price, PriceVersion, Product, ProductVersion

Status = CatalogVersion.Status


class InvalidVersionTransition(ValueError):
    def __init__(self, version: CatalogVersion, target: str):
        super().__init__(f"{version} is {version.status}; cannot become {target}")


def content_of(contract: ProductV1 | PriceV1) -> dict[str, Any]:
    """The contract as stored on a version (JSON types)."""
    return contract.model_dump(mode="json")


def content_hash(content: dict[str, Any]) -> str:
    """What decides "changed": every canonical field except where it came from."""
    material = {key: value for key, value in content.items() if key != "source"}
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_diff(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, list]:
    """field → [before, after] for every field that differs (all fields when nothing
    came before); ``source`` is not content."""
    before = before or {}
    return {
        key: [before.get(key), value]
        for key, value in after.items()
        if key != "source" and before.get(key) != value
    }


def released_version(model: type[CatalogVersion], **owner) -> CatalogVersion | None:
    return model.objects.filter(status=Status.RELEASED, **owner).order_by("-number").first()


@dataclass(frozen=True)
class Intake:
    """What one item did: the new draft (None when unchanged) of each record."""

    product_version: ProductVersion | None
    price_versions: list[PriceVersion]


def _new_version(model, owner_field: str, owner, content: dict, *, transaction_id, source_event,
                 effective_from=None, **extra) -> CatalogVersion | None:
    digest = content_hash(content)
    versions = model.objects.select_for_update().filter(**{owner_field: owner})
    latest = versions.exclude(status=Status.REJECTED).order_by("-number").first()
    if latest is not None and latest.content_hash == digest:
        return None  # unchanged (or the same change already waiting / rejected before: see below)
    rejected = versions.filter(status=Status.REJECTED, content_hash=digest).order_by("-number").first()
    if rejected is not None and (latest is None or rejected.number > latest.number):
        return None  # the platform still says what a person rejected; not asked again
    released = versions.filter(status=Status.RELEASED).order_by("-number").first()
    versions.filter(status=Status.DRAFT).update(
        status=Status.SUPERSEDED, decision_reason="a newer change arrived before a decision",
        decided_at=timezone.now(),
    )
    number = (versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    return model.objects.create(
        **{owner_field: owner}, number=number, content=content, content_hash=digest,
        changes=content_diff(released.content if released else None, content),
        effective_from=effective_from, transaction_id=transaction_id, source_event=source_event, **extra,
    )


@transaction.atomic
def catalog_item_ingest(
    product: ProductV1, prices: list[PriceV1], *, transaction_id: uuid.UUID | None = None,
    source_event: int | None = None,
) -> Intake:
    """Record one catalog item (a product and its prices) as drafts where it changed.
    Prices of the item the platform no longer lists are not touched here: a price is
    retired by an item that lists it with ``active`` false."""
    record, created = Product.objects.select_for_update().get_or_create(
        sku=product.sku,
        defaults={"name": product.display_name, "is_active": product.active,
                  "source_system": product.source.system, "source_id": product.source.external_id},
    )
    if not created and not record.source_id:
        record.source_system, record.source_id = product.source.system, product.source.external_id
        record.save(update_fields=["source_system", "source_id"])
    product_version = _new_version(
        ProductVersion, "product", record, content_of(product), transaction_id=transaction_id,
        source_event=source_event,
    )
    price_versions = []
    for price in prices:
        identity, _ = Price.objects.get_or_create(
            source_system=price.source.system, source_id=price.source.external_id,
            defaults={"product": record, "currency": price.currency},
        )
        if identity.product_id != record.pk:
            raise ValueError(f"price {price.source.external_id} belongs to {identity.product.sku}, not {product.sku}")
        version = _new_version(
            PriceVersion, "price", identity, content_of(price), transaction_id=transaction_id,
            source_event=source_event, effective_from=price.effective_from, unit_amount=price.unit_amount,
        )
        if version is not None:
            price_versions.append(version)
    return Intake(product_version, price_versions)


def _lock(version: CatalogVersion) -> CatalogVersion:
    return type(version).objects.select_for_update().get(pk=version.pk)


@transaction.atomic
def version_approve(version: CatalogVersion, *, user=None, rule: str = "", reason: str = "") -> CatalogVersion:
    """draft → approved, by a person (``user``) or an auto-approval ``rule``. Approving
    an approved version again is a no-op."""
    locked = _lock(version)
    if locked.status == Status.APPROVED:
        return locked
    if locked.status != Status.DRAFT:
        raise InvalidVersionTransition(locked, Status.APPROVED)
    locked.status, locked.decided_at = Status.APPROVED, timezone.now()
    locked.decided_by = user if getattr(user, "pk", None) else None
    locked.decided_by_rule, locked.decision_reason = rule, reason
    locked.save(update_fields=["status", "decided_at", "decided_by", "decided_by_rule", "decision_reason"])
    return locked


@transaction.atomic
def version_reject(version: CatalogVersion, *, user, reason: str) -> CatalogVersion:
    """draft → rejected, with the reason (required). Nothing is sent anywhere."""
    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    locked = _lock(version)
    if locked.status != Status.DRAFT:
        raise InvalidVersionTransition(locked, Status.REJECTED)
    locked.status, locked.decided_at, locked.decision_reason = Status.REJECTED, timezone.now(), reason
    locked.decided_by = user if getattr(user, "pk", None) else None
    locked.save(update_fields=["status", "decided_at", "decided_by", "decision_reason"])
    return locked


@transaction.atomic
def version_mark_released(version: CatalogVersion) -> CatalogVersion:
    """approved → released once every target has it; the version released before it
    becomes history. The product's list fields follow its released version."""
    locked = _lock(version)
    if locked.status == Status.RELEASED:
        return locked
    if locked.status != Status.APPROVED:
        raise InvalidVersionTransition(locked, Status.RELEASED)
    owner = {"product_id": locked.product_id} if isinstance(locked, ProductVersion) else {"price_id": locked.price_id}
    siblings = type(locked).objects.filter(**owner)
    if siblings.filter(status=Status.RELEASED, number__gt=locked.number).exists():
        # A later version overtook this one (approved after it, released first).
        locked.status, locked.released_at = Status.SUPERSEDED, timezone.now()
        locked.save(update_fields=["status", "released_at"])
        return locked
    siblings.filter(status=Status.RELEASED).update(status=Status.SUPERSEDED)
    locked.status, locked.released_at = Status.RELEASED, timezone.now()
    locked.save(update_fields=["status", "released_at"])
    if isinstance(locked, ProductVersion):
        Product.objects.filter(pk=locked.product_id).update(
            name=locked.content["display_name"], is_active=locked.content["active"])
    return locked
