"""Webhook endpoints from the account page, notifications from the dashboard."""

from django.urls import path

from notifications import views

urlpatterns = [
    path("account/webhooks/", views.webhook_create, name="webhook-create"),
    path("account/webhooks/<int:pk>/<str:action>/", views.webhook_action, name="webhook-action"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
]
