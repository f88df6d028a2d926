from django.urls import path

from trust.api import views

urlpatterns = [
    path("providers/me/checks/", views.CheckListView.as_view(), name="gpu-check-list"),
    path("providers/me/checks/<int:pk>/start/", views.CheckStartView.as_view(), name="gpu-check-start"),
    path("providers/me/checks/<int:pk>/commitment/", views.CheckCommitmentView.as_view(), name="gpu-check-commitment"),
    path("providers/me/checks/<int:pk>/opening/", views.CheckOpeningView.as_view(), name="gpu-check-opening"),
]
