from django.urls import path

from payments.api import views

urlpatterns = [
    path("account/top-ups/", views.TopUpListView.as_view(), name="top-up-list"),
    path("account/top-ups/<int:pk>/", views.TopUpDetailView.as_view(), name="top-up-detail"),
    path("account/demo-credits/", views.DemoCreditView.as_view(), name="demo-credit"),
    path("payments/stripe/webhook/", views.StripeWebhookView.as_view(), name="stripe-webhook"),
]
