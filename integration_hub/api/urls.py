from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from integration_hub.api import views, webhooks
from integration_hub.usage import api as usage

router = SimpleRouter()
router.register("deliveries", views.DeliveryViewSet, basename="delivery")
router.register("exceptions", views.ExceptionRecordViewSet, basename="exception")

urlpatterns = [
    path("webhooks/<slug:source>/", webhooks.webhook_receive, name="webhook"),
    path("transactions/<uuid:transaction_id>/", views.transaction_detail, name="transaction-detail"),
    path("connections/", views.connections_health, name="connections-health"),
    path("syncs/customers/", views.customers_sync, name="sync-customers"),
    path("syncs/<int:run_id>/", views.sync_detail, name="sync-detail"),
    path("customers/<int:customer_id>/", views.customer_detail_view, name="customer-detail"),
    path("usage/batches/", usage.batches, name="usage-batches"),
    path("usage/batches/<int:batch_id>/", usage.batch_detail, name="usage-batch-detail"),
    path("usage/batches/<int:batch_id>/rejects.csv", usage.batch_rejects, name="usage-batch-rejects"),
    path("usage/periods/<str:period>/close/", usage.period_close, name="usage-period-close"),
    path("reconciliations/", usage.reconciliations, name="reconciliations"),
    path("reconciliations/<int:checkpoint_id>/", usage.reconciliation_detail, name="reconciliation-detail"),
    path("reconciliations/<int:checkpoint_id>/repair/", usage.reconciliation_repair, name="reconciliation-repair"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    *router.urls,
]
