from django.contrib import admin
from django.urls import include, path

from integration_hub.operations import views as console
from integration_hub.operations.metrics import metrics_view

admin.site.site_header = "Integration Hub"
admin.site.site_title = "Integration Hub"
admin.site.index_title = "Operations console"
admin.site.index_template = "operations/admin_index.html"  # adds the dashboard and inventory links

urlpatterns = [
    # The console's pages sit beside the admin and use its login.
    path("admin/dashboard/", admin.site.admin_view(console.dashboard_view), name="hub-dashboard"),
    path("admin/inventory/", admin.site.admin_view(console.inventory_view), name="hub-inventory"),
    path("admin/transactions/<uuid:transaction_id>/", admin.site.admin_view(console.transaction_view),
         name="hub-transaction"),
    path("admin/", admin.site.urls),
    path("api/", include("integration_hub.api.urls")),
    path("metrics", metrics_view, name="metrics"),
]
