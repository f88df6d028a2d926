from django.urls import path

from marketplace.api import views

urlpatterns = [
    path("orders/", views.OrderListCreateView.as_view(), name="order-list"),
    path("orders/<int:pk>/", views.OrderDetailView.as_view(), name="order-detail"),
    path("orders/<int:pk>/cancel/", views.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<int:pk>/accept/", views.OrderAcceptView.as_view(), name="order-accept"),
    path("orders/<int:pk>/bids/", views.OrderBidsView.as_view(), name="order-bids"),
    path("orders/<int:pk>/bids/<int:bid>/terms/", views.BidTermsView.as_view(), name="bid-terms"),
    path("orders/<int:pk>/authorization/", views.OrderAuthorizationView.as_view(), name="order-authorization"),
    path("bids/", views.BidListView.as_view(), name="bid-list"),
    path("bids/<int:pk>/", views.BidDetailView.as_view(), name="bid-detail"),
    path("bids/<int:pk>/withdraw/", views.BidWithdrawView.as_view(), name="bid-withdraw"),
    path("provider/orders/", views.ProviderOrderFeedView.as_view(), name="provider-orders"),
]
