"""List pagination with a ceiling: ``?limit=`` above HUB_API_MAX_PAGE_SIZE is capped."""

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination


class HubPagination(LimitOffsetPagination):
    @property
    def max_limit(self) -> int:  # read per request so tests and operators can change it
        return settings.HUB_API_MAX_PAGE_SIZE
