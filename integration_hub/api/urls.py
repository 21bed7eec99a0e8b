from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from integration_hub.api import catalog, rates, views, webhooks
from integration_hub.usage import api as usage

router = SimpleRouter()
router.register("deliveries", views.DeliveryViewSet, basename="delivery")
router.register("exceptions", views.ExceptionRecordViewSet, basename="exception")

urlpatterns = [
    path("webhooks/<slug:source>/", webhooks.webhook_receive, name="webhook"),
    path("transactions/<uuid:transaction_id>/", views.transaction_detail, name="transaction-detail"),
    path("connections/", views.connections_health, name="connections-health"),
    path("syncs/customers/", views.customers_sync, name="sync-customers"),
    path("syncs/catalog/", catalog.catalog_sync, name="sync-catalog"),
    path("catalog/versions/", catalog.catalog_versions, name="catalog-versions"),
    path("catalog/versions/<str:kind>/<int:version_id>/<str:decision>/", catalog.catalog_decide,
         name="catalog-decide"),
    path("catalog/prices/<str:ref>/released/", catalog.catalog_price_released, name="catalog-price-released"),
    path("rates/load/", rates.rates_load_view, name="rates-load"),
    path("syncs/<int:run_id>/", views.sync_detail, name="sync-detail"),
    path("customers/<int:customer_id>/", views.customer_detail_view, name="customer-detail"),
    path("subscriptions/<int:subscription_id>/", views.subscription_detail_view, name="subscription-detail"),
    path("inventory/", views.inventory_list, name="inventory"),
    path("usage/batches/", usage.batches, name="usage-batches"),
    path("usage/batches/<int:batch_id>/", usage.batch_detail, name="usage-batch-detail"),
    path("usage/batches/<int:batch_id>/rejects.csv", usage.batch_rejects, name="usage-batch-rejects"),
    path("usage/periods/<str:period>/close/", usage.period_close, name="usage-period-close"),
    path("reconciliations/", usage.reconciliations, name="reconciliations"),
    path("reconciliations/<int:checkpoint_id>/", usage.reconciliation_detail, name="reconciliation-detail"),
    path("reconciliations/<int:checkpoint_id>/repair/", usage.reconciliation_repair, name="reconciliation-repair"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("schema/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    *router.urls,
]
