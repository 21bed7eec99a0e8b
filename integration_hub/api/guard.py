"""The last line of defence for the API: nothing a client sends becomes a 500.

Every view under ``/api/`` answers 4xx with a reason for input it cannot take. If
one still raises something unexpected, this middleware logs it as an incident (the
traceback stays in the log, keyed by an incident id) and answers 400 with that id
and no traceback. A database that is unreachable is the hub's problem, not the
client's: that stays a 503 so vendors retry; bad data the database refuses
(``DataError``) is the client's, and gets a 400.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import structlog
from django.db import DatabaseError, DataError, IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = structlog.get_logger(__name__)

API_PREFIX = "/api/"


def incident_response(request: HttpRequest, exc: BaseException) -> JsonResponse:
    """Log ``exc`` as an incident and build the answer the client gets."""
    incident = uuid.uuid4().hex[:12]
    if isinstance(exc, DatabaseError) and not isinstance(exc, DataError | IntegrityError):
        log.error("api_database_unavailable", incident=incident, path=request.path, exc_info=exc)
        return JsonResponse(
            {"error": "unavailable", "detail": "the hub cannot serve this right now; retry later",
             "incident": incident}, status=503,
        )
    log.error("api_incident", incident=incident, path=request.path, method=request.method,
              error_class=type(exc).__name__, exc_info=exc)
    return JsonResponse(
        {"error": "unprocessable_input",
         "detail": f"the request could not be processed; quote incident {incident} to the operators",
         "incident": incident}, status=400,
    )


class ApiGuardMiddleware:
    """Turns an exception escaping an ``/api/`` view into a logged incident and a 400."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        return incident_response(request, exc)


def drf_exception_handler(exc: Exception, context: dict):
    """DRF's handler for what DRF knows (validation, auth, throttling, 404); anything
    else becomes the same logged incident the middleware makes, inside DRF."""
    from rest_framework.views import exception_handler, set_rollback

    response = exception_handler(exc, context)
    if response is not None:
        return response
    request = context.get("request")
    django_request = getattr(request, "_request", request)
    answer = incident_response(django_request, exc)
    set_rollback()
    from rest_framework.response import Response

    return Response(json.loads(answer.content), status=answer.status_code)
