from django.urls import path

from chain.api import views

urlpatterns = [
    path("wallets/", views.WalletListLinkView.as_view(), name="wallet-list"),
    path("wallets/challenge/", views.WalletChallengeView.as_view(), name="wallet-challenge"),
    path("wallets/<str:address>/", views.WalletUnlinkView.as_view(), name="wallet-unlink"),
]
