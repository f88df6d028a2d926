"""The provider's console."""

from django.urls import path

from providers import views

urlpatterns = [
    path("provider/", views.provider_console, name="provider"),
]
