"""API tokens that expire: a leaked token is useful for a bounded time."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing tokens older than HUB_API_TOKEN_TTL_HOURS.
    Renew with ``manage.py drf_create_token --reset <user>``."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token.created < timezone.now() - dt.timedelta(hours=settings.HUB_API_TOKEN_TTL_HOURS):
            raise exceptions.AuthenticationFailed("Token has expired; ask for a new one.")
        return user, token
