"""Card top-ups of the account's balance."""

from django.urls import path

from payments import views

urlpatterns = [
    path("account/top-up/", views.top_up_new, name="top-up-new"),
    path("account/top-ups/<int:pk>/", views.top_up_status, name="top-up"),
]
