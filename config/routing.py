"""WebSocket routes. Each app's consumers join here as they arrive."""

from django.urls import path

from providers.consumers import ProviderConsumer

websocket_urlpatterns: list = [
    path("ws/provider/", ProviderConsumer.as_asgi()),
]
