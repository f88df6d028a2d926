"""The account page and API tokens."""

from django.urls import path

from core import views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("account/ssh-keys/", views.ssh_key_add, name="ssh-key-add"),
    path("account/ssh-keys/<int:pk>/remove/", views.ssh_key_remove, name="ssh-key-remove"),
]
