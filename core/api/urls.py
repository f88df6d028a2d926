from django.urls import path

from core.api import views

urlpatterns = [
    path("tokens/", views.TokenListCreateView.as_view(), name="token-list"),
    path("tokens/<int:pk>/revoke/", views.TokenRevokeView.as_view(), name="token-revoke"),
    path("account/ssh-keys/", views.SshKeyListCreateView.as_view(), name="ssh-key-list"),
    path("account/ssh-keys/<int:pk>/", views.SshKeyDeleteView.as_view(), name="ssh-key-delete"),
]
