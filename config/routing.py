"""WebSocket routes. Each app's consumers join here as they arrive."""

from django.urls import path

from leases.consumers import LeaseConsumer, ShellConsumer
from marketplace.consumers import OrderConsumer
from providers.consumers import ProviderConsumer

websocket_urlpatterns: list = [
    path("ws/provider/", ProviderConsumer.as_asgi()),
    path("ws/orders/<int:pk>/", OrderConsumer.as_asgi()),
    path("ws/leases/<int:pk>/", LeaseConsumer.as_asgi()),
    path("ws/leases/<int:pk>/shell/", ShellConsumer.as_asgi()),
]
