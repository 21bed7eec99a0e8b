from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from integration_hub.api import catalog, views, webhooks

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
    path("syncs/<int:run_id>/", views.sync_detail, name="sync-detail"),
    path("customers/<int:customer_id>/", views.customer_detail_view, name="customer-detail"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    *router.urls,
]
