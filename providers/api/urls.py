from django.urls import path

from providers.api import views

urlpatterns = [
    path("gpu-models/", views.GpuModelListView.as_view(), name="gpu-model-list"),
    path("offers/", views.OfferListView.as_view(), name="offer-list"),
    path("providers/me/", views.ProviderMeView.as_view(), name="provider-me"),
    path("providers/me/inventory/", views.InventoryView.as_view(), name="provider-inventory"),
    path("providers/me/heartbeat/", views.HeartbeatView.as_view(), name="provider-heartbeat"),
]
