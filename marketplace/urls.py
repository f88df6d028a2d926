"""The web UI's pages (namespace ``web``); the API lives under /api/v1/."""

from django.urls import path

from chain import views as chain_views
from leases import views as lease_views
from marketplace import views
from payments import views as payment_views

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("offers/", views.offers, name="offers"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("provider/", views.provider_console, name="provider"),
    path("account/", views.account, name="account"),
    path("account/top-up/", payment_views.top_up_new, name="top-up-new"),
    path("account/top-ups/<int:pk>/", payment_views.top_up_status, name="top-up"),
    path("account/webhooks/", views.webhook_create, name="webhook-create"),
    path("account/webhooks/<int:pk>/<str:action>/", views.webhook_action, name="webhook-action"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification-read"),
    path("account/wallets/<str:address>/unlink/", chain_views.wallet_unlink, name="wallet-unlink"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("orders/new/", views.order_new, name="order-new"),
    path("orders/new/check/", views.order_check, name="order-check"),
    path("orders/<int:pk>/", views.order_detail, name="order"),
    path("orders/<int:pk>/live/", views.order_bids, name="order-live"),
    path("orders/<int:pk>/accept/", views.order_accept, name="order-accept"),
    path("orders/<int:pk>/cancel/", views.order_cancel, name="order-cancel"),
    path("leases/<int:pk>/", lease_views.lease_detail, name="lease"),
    path("leases/<int:pk>/live/", lease_views.lease_panel, name="lease-live"),
    path("leases/<int:pk>/logs/", lease_views.lease_logs, name="lease-logs"),
    path("leases/<int:pk>/close/", lease_views.lease_close, name="lease-close"),
    path("leases/<int:pk>/top-up/", lease_views.lease_top_up, name="lease-top-up"),
]
