"""Wallets on the account page (signing in with Ethereum is routed with the other logins)."""

from django.urls import path

from chain import views

urlpatterns = [
    path("account/wallets/<str:address>/unlink/", views.wallet_unlink, name="wallet-unlink"),
]
