from django.urls import path

from ledger.api import views

urlpatterns = [
    path("account/ledger/", views.LedgerView.as_view(), name="account-ledger"),
    path("account/statements/<str:month>/", views.AccountStatementView.as_view(), name="account-statement"),
]
