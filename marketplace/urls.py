"""The marketplace's pages: the landing page, offers, the dashboard, orders and their live bids."""

from django.urls import path

from marketplace import views

urlpatterns = [
    path("", views.home, name="home"),
    path("offers/", views.offers, name="offers"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("orders/new/", views.order_new, name="order-new"),
    path("orders/new/check/", views.order_check, name="order-check"),
    path("orders/<int:pk>/", views.order_detail, name="order"),
    path("orders/<int:pk>/live/", views.order_bids, name="order-live"),
    path("orders/<int:pk>/accept/", views.order_accept, name="order-accept"),
    path("orders/<int:pk>/cancel/", views.order_cancel, name="order-cancel"),
]
