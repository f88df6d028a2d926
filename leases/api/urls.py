from django.urls import path

from leases.api import views

urlpatterns = [
    path("leases/", views.LeaseListView.as_view(), name="lease-list"),
    path("leases/<int:pk>/", views.LeaseDetailView.as_view(), name="lease-detail"),
    path("leases/<int:pk>/close/", views.LeaseCloseView.as_view(), name="lease-close"),
    path("leases/<int:pk>/manifest/", views.LeaseManifestView.as_view(), name="lease-manifest"),
    path("leases/<int:pk>/logs/", views.LeaseLogsView.as_view(), name="lease-logs"),
    path("leases/<int:pk>/status/", views.LeaseStatusView.as_view(), name="lease-status"),
    path("leases/<int:pk>/top-ups/", views.LeaseTopUpView.as_view(), name="lease-top-ups"),
    path("leases/<int:pk>/usage/", views.LeaseUsageView.as_view(), name="lease-usage"),
    path("leases/<int:pk>/shell-sessions/", views.LeaseShellSessionsView.as_view(), name="lease-shell-sessions"),
    path("usage-reports/", views.UsageBatchView.as_view(), name="usage-reports"),
    path("leases/<int:pk>/statement/", views.LeaseStatementView.as_view(), name="lease-statement"),
    path("provider/earnings/", views.ProviderEarningsView.as_view(), name="provider-earnings"),
    path("account/", views.AccountView.as_view(), name="account"),
]
