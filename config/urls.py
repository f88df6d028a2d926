from csp.decorators import csp_exempt
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from chain import views as chain_web
from core import views as core_web
from core.api import views as core_views
from marketplace import metrics as market_metrics

api_v1 = [
    path("", include("core.api.urls")),
    path("", include("chain.api.urls")),
    path("", include("providers.api.urls")),
    path("", include("marketplace.api.urls")),
    path("", include("leases.api.urls")),
    path("", include("ledger.api.urls")),
    path("", include("notifications.api.urls")),
    path("", include("payments.api.urls")),
    path("", include("trust.api.urls")),
]

# The web UI's pages, one namespace (``web``) for the URLs each app routes to its own pages.
WEB_APPS = ["marketplace", "core", "notifications", "chain", "providers", "leases", "payments"]
web = [path("", include(f"{app}.urls")) for app in WEB_APPS]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("favicon.ico", core_web.favicon, name="favicon"),
    path("readyz", core_views.readyz, name="readyz"),
    path("metrics", market_metrics.metrics, name="metrics"),
    path("internal/realtime/", core_views.realtime_relay, name="realtime-relay"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # the interactive docs run inline scripts of their own: outside the Content-Security-Policy
    path("api/docs/", csp_exempt()(SpectacularSwaggerView.as_view(url_name="schema")), name="api-docs"),
    path("api/redoc/", csp_exempt()(SpectacularRedocView.as_view(url_name="schema")), name="api-redoc"),
    path("accounts/signup/", core_web.signup, name="signup"),
    path("accounts/login/", core_web.LoginView.as_view(), name="login"),
    path("accounts/ethereum/challenge/", chain_web.sign_in_challenge, name="siwe-challenge"),
    path("accounts/ethereum/login/", chain_web.sign_in, name="siwe-login"),
    path("accounts/", include("django.contrib.auth.urls")),  # logout, password reset and change
    path("admin/", admin.site.urls),
    path("", include((web, "web"))),
]

handler400 = "core.api.errors.json_bad_request"
handler403 = "core.api.errors.json_permission_denied"
handler404 = "core.api.errors.json_not_found"
handler500 = "core.api.errors.json_server_error"
