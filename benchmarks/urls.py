"""The hub's URLs, plus the bare DRF endpoint the webhook is measured against."""

from django.urls import include, path

from benchmarks.baseline.views import BaselineInsertView

urlpatterns = [
    path("", include("integration_hub.urls")),
    path("bench/baseline/", BaselineInsertView.as_view()),
]
