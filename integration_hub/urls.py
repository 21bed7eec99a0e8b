from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Integration Hub"
admin.site.site_title = "Integration Hub"
admin.site.index_title = "Operations console"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("integration_hub.api.urls")),
]
