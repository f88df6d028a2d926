"""A lease's page, its live panel and logs, and its buttons."""

from django.urls import path

from leases import views

urlpatterns = [
    path("leases/<int:pk>/", views.lease_detail, name="lease"),
    path("leases/<int:pk>/live/", views.lease_panel, name="lease-live"),
    path("leases/<int:pk>/logs/", views.lease_logs, name="lease-logs"),
    path("leases/<int:pk>/logs/download/", views.lease_logs_download, name="lease-logs-download"),
    path("leases/<int:pk>/close/", views.lease_close, name="lease-close"),
    path("leases/<int:pk>/top-up/", views.lease_top_up, name="lease-top-up"),
    path("leases/<int:pk>/auto-top-up/", views.lease_auto_top_up, name="lease-auto-top-up"),
]
