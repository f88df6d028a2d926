from django.urls import path

from trust.api import views

urlpatterns = [
    path("providers/me/checks/", views.CheckListView.as_view(), name="gpu-check-list"),
    path("providers/me/checks/<int:pk>/start/", views.CheckStartView.as_view(), name="gpu-check-start"),
    path("providers/me/checks/<int:pk>/commitment/", views.CheckCommitmentView.as_view(), name="gpu-check-commitment"),
    path("providers/me/checks/<int:pk>/opening/", views.CheckOpeningView.as_view(), name="gpu-check-opening"),
    path("providers/me/attestations/", views.AttestationListView.as_view(), name="attestation-list"),
    path("providers/me/attestations/<int:pk>/token/", views.AttestationTokenView.as_view(), name="attestation-token"),
]
