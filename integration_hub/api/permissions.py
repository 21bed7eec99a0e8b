"""Permission classes for the API: a token's user must hold the action's permission,
and see the data's owning team (``operations/roles.py``, ``operations/access.py``)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from integration_hub.operations import access


def requires(*permissions: str) -> type[BasePermission]:
    """The (token's) user holds every one of ``permissions``."""

    class Requires(BasePermission):
        message = f"this needs the permission(s) {', '.join(permissions)}"

        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(permissions))

    return Requires


def owner_of(kind: str) -> type[BasePermission]:
    """The user's teams own the data of business transactions of ``kind`` (or see every team's)."""

    class OwnerOf(BasePermission):
        message = f"{kind} data belongs to another team"

        def has_permission(self, request, view) -> bool:
            return bool(request.user and request.user.is_authenticated and access.owns_kind(request.user, kind))

    return OwnerOf
