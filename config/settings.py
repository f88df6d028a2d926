"""Settings for the GPU marketplace.

Everything that differs between machines comes from one django-environ ``env`` object
(environment variables, or a ``.env`` file beside ``manage.py``). The defaults are the embedded
ones that ``make run`` uses: a SQLite file, an in-memory channel layer, a local Celery transport
on the filesystem, no Redis. README.md has a table of every setting.
"""

import warnings
from datetime import timedelta
from pathlib import Path

import corsheaders.defaults
import csp.constants
import environ
import structlog
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 - development only, warned about
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    warnings.warn(
        "SECRET_KEY is not set: using the development default. Never do this in production.",
        RuntimeWarning,
        stacklevel=1,
    )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "core.api.errors.csrf_failure"  # the error page, or the JSON error shape

# Served over HTTPS (behind a proxy or an ingress that sets X-Forwarded-Proto): redirect plain HTTP,
# secure cookies, HSTS. The probes and /metrics answer over plain HTTP inside the cluster.
HTTPS = env.bool("HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    # submitting the domain to browsers' preload list is the operator's decision, not a default
    SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"

# CORS, for integrators calling the API from a browser app on another origin (token auth: no
# cookies cross origins). Empty: no other origin may.
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = (*corsheaders.defaults.default_headers, "idempotency-key")
CORS_EXPOSE_HEADERS = ["Retry-After", "Idempotent-Replayed"]

# Logging in with a password: after LOGIN_FAILURES_PER_ACCOUNT failed attempts on one account (or
# LOGIN_FAILURES_PER_ADDRESS from one address) within LOGIN_LOCKOUT_SECONDS, further attempts are
# refused without checking the password until the window ends.
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_ADDRESS = env.int("LOGIN_FAILURES_PER_ADDRESS", default=30)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
# Sign-In with Ethereum challenges one address may ask for within LOGIN_LOCKOUT_SECONDS.
SIWE_CHALLENGES_PER_ADDRESS = env.int("SIWE_CHALLENGES_PER_ADDRESS", default=60)
# Proxies in front of the app that append to X-Forwarded-For (an ingress: 1). The client's address,
# for login lockouts and anonymous rate limits, is then the one they saw; 0 trusts no such header.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Prometheus: /metrics (request metrics from django-prometheus, the market's own from the database).
# Set METRICS_TOKEN to require "Authorization: Bearer <token>" there.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Error reports to Sentry, where SENTRY_DSN is set.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
        send_default_pii=False,  # no user data, cookies or headers beyond what Sentry scrubs
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "csp",
    "django_prometheus",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_htmx",
    "core",
    "notifications",
    "chain",
    "providers",
    "ledger",
    "leases",
    "trust",
    "marketplace",
    "payments",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "core.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web server, Celery worker) share the file: wait for locks instead of
    # failing, take the write lock when a transaction starts, and let readers run beside writers.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif env.bool("DB_POOL", default=True):
    # A psycopg connection pool per process: under ASGI, sync code runs in executor threads, and
    # persistent per-thread connections would pile up; the pool bounds them and keeps them warm.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "core.User"

# --- Redis: channel layer, Celery broker and cache, or embedded stand-ins --------------------
REDIS_URL = env.str("REDIS_URL", default="")
# What this deployment keeps on Redis (cache, rate-limit counters, channel groups, and, when not the
# default, Celery's queues) is named under this prefix, so deployments sharing a Redis, and test
# runs sharing one (`make test` sets one per run), never meet.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="gpumarket")
if env.str("PYTEST_XDIST_WORKER", default=""):  # a parallel test run: each of its workers apart too
    REDIS_KEY_PREFIX = f"{REDIS_KEY_PREFIX}-{env.str('PYTEST_XDIST_WORKER')}"
# Where a worker hands its live events when the channel layer is in the web process's memory
# (`make run` sets it for its worker): the web process's /internal/realtime/.
REALTIME_RELAY_URL = env.str("REALTIME_RELAY_URL", default="")
REALTIME_RELAY_ACCEPT = False

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Redis pub/sub: one PUBLISH an event (core/layers.py says why not channels_redis's)
            "BACKEND": "core.layers.RedisPubSubLayer",
            # a page that falls behind keeps up to 500 events (bids carry their rows) before
            # the layer drops any; its periodic refresh makes up for those
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 500, "prefix": REDIS_KEY_PREFIX},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX,
        }
    }
    # Redis is the broker unless CELERY_BROKER_URL names another (RabbitMQ: amqp://user:pass@host:5672//)
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
        {} if REDIS_KEY_PREFIX == "gpumarket" else {"global_keyprefix": f"{REDIS_KEY_PREFIX}:"}
    )
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The layer is in this process's memory: a worker relays its events to the web process.
    REALTIME_RELAY_ACCEPT = True
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # A local transport that needs no server: messages are files under var/celery, so the web
    # process and a worker on the same machine can talk without Redis.
    _CELERY_DIR = VAR_DIR / "celery"
    for _folder in ("queue", "processed", "control"):
        (_CELERY_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_DIR / "queue"),
        "data_folder_out": str(_CELERY_DIR / "queue"),
        "processed_folder": str(_CELERY_DIR / "processed"),
        "control_folder": str(_CELERY_DIR / "control"),  # not ./control in whatever directory runs it
        "store_processed": False,
    }

CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = CELERY_TASK_ALWAYS_EAGER  # tests see a failing task's error
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 90
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
PROOF_SWEEP_SECONDS = 60  # how often the worker sweeps proof-of-GPU checks (and draws spot checks)
CELERY_BEAT_SCHEDULE = {
    "warn-low-funds": {"task": "leases.tasks.warn_low_funds", "schedule": timedelta(seconds=60)},
    "settle-leases": {
        "task": "leases.tasks.settle_leases",
        "schedule": timedelta(seconds=env.int("SETTLEMENT_INTERVAL_SECONDS", default=300)),
    },
    "send-due-webhooks": {
        "task": "notifications.tasks.send_due_webhooks",
        "schedule": timedelta(seconds=env.int("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=30)),
    },
    "award-due-orders": {
        "task": "marketplace.tasks.sweep_due_orders",
        "schedule": timedelta(seconds=env.int("AUCTION_SWEEP_INTERVAL_SECONDS", default=15)),
    },
    "sync-chain": {
        "task": "leases.tasks.sync_chain",
        "schedule": timedelta(seconds=env.int("CHAIN_SYNC_INTERVAL_SECONDS", default=10)),
    },
    "close-finished-leases": {
        "task": "leases.tasks.close_finished_leases",
        "schedule": timedelta(seconds=env.int("LEASE_SWEEP_INTERVAL_SECONDS", default=60)),
    },
    "sweep-gpu-checks": {"task": "trust.tasks.sweep_checks", "schedule": timedelta(seconds=PROOF_SWEEP_SECONDS)},
    "update-reputations": {"task": "trust.tasks.update_reputations", "schedule": timedelta(minutes=10)},
    "purge-wallet-challenges": {"task": "chain.tasks.purge_challenges", "schedule": timedelta(hours=1)},
}

# --- Auth, i18n, static ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- Request limits -------------------------------------------------------------------------
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.HasRole"],
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.LimitedJSONParser",
        "core.api.parsers.YAMLParser",
        "core.api.parsers.LegacyYAMLParser",
        "core.api.parsers.TextYAMLParser",
    ],
    # The browsable API only while developing: negotiating it costs every request.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.TokenRateThrottle", "core.api.throttling.ActionRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "token": env.str("API_THROTTLE_RATE", default="1200/minute"),
        # per token, on top: bids placed or changed, and API tokens created
        "bids": env.str("BID_THROTTLE_RATE", default="120/minute"),
        "tokens": env.str("TOKEN_CREATE_THROTTLE_RATE", default="20/hour"),
    },
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_SCHEMA_CLASS": "core.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "COERCE_DECIMAL_TO_STRING": False,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Marketplace API",
    "DESCRIPTION": (
        "An open marketplace for raw GPU time. Clients post workload orders, providers bid a "
        "price per hour, a reverse auction awards a lease, and money moves through a double-entry "
        "ledger. Amounts are integer micro-dollars (1 USD = 1,000,000). Authenticate with "
        "`Authorization: Bearer <token>`. Errors always have the shape "
        '`{"error": {"code": "...", "message": "...", "fields": {...}}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # One name for a choice set that several serializers share.
    "ENUM_NAME_OVERRIDES": {
        "ProviderStatusEnum": "providers.models.Provider.Status",
        "CardTopUpStatusEnum": "payments.models.CardTopUp.Status",
        "GpuCheckStatusEnum": "trust.models.GpuCheck.Status",
        "LeaseFailureCauseEnum": "leases.models.Lease.FailureCause",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.error_responses",
    ],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "APPEND_COMPONENTS": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token."}}
    },
    "SECURITY": [{"bearerAuth": []}],
}

# --- Marketplace rules ----------------------------------------------------------------------
# A provider whose last heartbeat is older than this is offline: not listed, cannot win.
PROVIDER_OFFLINE_AFTER_SECONDS = env.int("PROVIDER_OFFLINE_AFTER_SECONDS", default=300)
# A provider silent this long has abandoned its leases: they close, paying only the reported usage.
LEASE_ABANDONED_AFTER_SECONDS = env.int("LEASE_ABANDONED_AFTER_SECONDS", default=900)

# Proof of GPU (docs/PROOF_OF_GPU.md). A challenge is sized so an honest card of the claimed model
# needs PROOF_TARGET_SECONDS; its commitment must arrive within that time x (1 + PROOF_MARGIN)
# + PROOF_ALLOWANCE_SECONDS of the agent starting it. PROOF_ROWS_PER_SECOND overrides a model's
# expected speed ({"catalog-id": rows per second}), e.g. from the operator's own calibration.
PROOF_TARGET_SECONDS = env.float("PROOF_TARGET_SECONDS", default=3.0)
PROOF_MARGIN = env.float("PROOF_MARGIN", default=0.25)
PROOF_ALLOWANCE_SECONDS = env.float("PROOF_ALLOWANCE_SECONDS", default=1.0)
PROOF_ROWS_PER_SECOND = env.json("PROOF_ROWS_PER_SECOND", default={})
PROOF_WIDTH = env.int("PROOF_WIDTH", default=2048)
PROOF_ROUNDS = env.int("PROOF_ROUNDS", default=10)
PROOF_LEAF_ROWS = env.int("PROOF_LEAF_ROWS", default=256)
PROOF_START_WITHIN_SECONDS = env.int("PROOF_START_WITHIN_SECONDS", default=900)  # else it expires
PROOF_OPEN_WITHIN_SECONDS = env.int("PROOF_OPEN_WITHIN_SECONDS", default=60)  # after the commitment
# after a failed check: no GPU of the provider is verified (or checked, unless by an operator) this long
PROOF_SUSPENSION_SECONDS = env.int("PROOF_SUSPENSION_SECONDS", default=86400)
# Spot checks: each running lease's GPUs are checked this many times a day on average, at random times.
PROOF_SPOT_CHECKS_PER_DAY = env.float("PROOF_SPOT_CHECKS_PER_DAY", default=6.0)
# A failure with the escrow on chain slashes the provider's stake: the affected clients' refunds, then
# this share (basis points) of the stake left, split among those clients as a penalty.
PROOF_SLASH_BPS = env.int("PROOF_SLASH_BPS", default=2500)
# Hardware attestation (NVIDIA confidential computing; docs/PROOF_OF_GPU.md). Offered only where
# ATTESTATION_ROOT_CERTS names a PEM file of the roots that NVIDIA's attestation keys chain to.
ATTESTATION_ROOT_CERTS = env.str("ATTESTATION_ROOT_CERTS", default="")
ATTESTATION_JWKS_URL = env.str(
    "ATTESTATION_JWKS_URL", default="https://nras.attestation.nvidia.com/.well-known/jwks.json"
)
ATTESTATION_JWKS_CACHE_SECONDS = env.int("ATTESTATION_JWKS_CACHE_SECONDS", default=3600)
ATTESTATION_ISSUER = env.str("ATTESTATION_ISSUER", default="https://nras.attestation.nvidia.com")
ATTESTATION_MIN_DRIVER_VERSION = env.str("ATTESTATION_MIN_DRIVER_VERSION", default="535.0")
ATTESTATION_NONCE_SECONDS = env.int("ATTESTATION_NONCE_SECONDS", default=600)  # to answer a nonce
ATTESTATION_VALID_SECONDS = env.int("ATTESTATION_VALID_SECONDS", default=7 * 86400)  # then attest again
# Last-used time of an API token is written at most this often, to keep requests cheap.
TOKEN_LAST_USED_RESOLUTION_SECONDS = 60
# How long an Idempotency-Key is remembered.
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)

# --- Chain ---------------------------------------------------------------------------------
# Where lease deposits are held: "ledger" (the database ledger alone) or "chain" (the escrow
# contract, with the ledger mirroring what the chain confirmed).
ESCROW_BACKEND = env.str("ESCROW_BACKEND", default="ledger")
# embedded: an in-process EVM with the contracts deployed at start-up; rpc: a JSON-RPC node.
CHAIN_BACKEND = env.str("CHAIN_BACKEND", default="embedded")
CHAIN_RPC_URL = env.str("CHAIN_RPC_URL", default="")
CHAIN_OPERATOR_KEY = env.str("CHAIN_OPERATOR_KEY", default="")
CHAIN_DEPLOYER_KEY = env.str("CHAIN_DEPLOYER_KEY", default="")
# The marketplace's custody account: holds in the escrow what clients without a wallet paid by card.
CHAIN_CUSTODY_KEY = env.str("CHAIN_CUSTODY_KEY", default="")
# The escrow's verifier, which slashes the stake of providers whose GPUs fail a check (default: the operator's key).
CHAIN_VERIFIER_KEY = env.str("CHAIN_VERIFIER_KEY", default="")
CHAIN_ESCROW_ADDRESS = env.str("CHAIN_ESCROW_ADDRESS", default="")
CHAIN_TOKEN_ADDRESS = env.str("CHAIN_TOKEN_ADDRESS", default="")
CHAIN_CONFIRMATIONS = env.int("CHAIN_CONFIRMATIONS", default=1)
CHAIN_RPC_RETRIES = env.int("CHAIN_RPC_RETRIES", default=4)
CHAIN_RECEIPT_TIMEOUT_SECONDS = env.float("CHAIN_RECEIPT_TIMEOUT_SECONDS", default=60.0)
CHAIN_UNSTAKE_DELAY_SECONDS = env.int("CHAIN_UNSTAKE_DELAY_SECONDS", default=7 * 24 * 3600)
# Demo only (make run): micro-dollars the in-process chain deposits from the demo client's wallet.
CHAIN_EMBEDDED_DEMO_FUNDS = env.int("CHAIN_EMBEDDED_DEMO_FUNDS", default=0)
# How long a Sign-In with Ethereum challenge may be signed and sent back.
SIWE_CHALLENGE_TTL_SECONDS = env.int("SIWE_CHALLENGE_TTL_SECONDS", default=600)
# The chain id in the EIP-712 domain of signed usage reports (set it to the escrow chain's id).
USAGE_SIGNING_CHAIN_ID = env.int("USAGE_SIGNING_CHAIN_ID", default=31337)
# Card top-ups through Stripe (test mode keys in development; STRIPE_API_BASE only for a local fake).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Stripe.js: always Stripe's own copy in production (PCI); a local fake's in tests.
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
# Pinned: the shape of every object we read depends on it.
STRIPE_API_VERSION = "2026-10-28.endive"

# Content-Security-Policy: scripts only from here, no inline scripts or handlers, no framing; styles
# may be inline (the pages' small style attributes). The card payment page adds Stripe's origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.constants.SELF],
        "script-src": [csp.constants.SELF],
        "style-src": [csp.constants.SELF, csp.constants.UNSAFE_INLINE],
        "img-src": [csp.constants.SELF, "data:"],
        "connect-src": [csp.constants.SELF],
        "frame-ancestors": [csp.constants.NONE],
        "form-action": [csp.constants.SELF],
        "base-uri": [csp.constants.SELF],
        "object-src": [csp.constants.NONE],
    },
}
CARD_TOP_UP_MIN_CENTS = env.int("CARD_TOP_UP_MIN_CENTS", default=500)
CARD_TOP_UP_MAX_CENTS = env.int("CARD_TOP_UP_MAX_CENTS", default=1_000_000)
# Money any account may add without a card, in US cents (0: none). For demonstration servers only.
DEMO_CREDIT_CENTS = env.int("DEMO_CREDIT_CENTS", default=0)
# Warn a client when a lease's deposit runs out within this many seconds.
LOW_FUNDS_WARNING_SECONDS = env.int("LOW_FUNDS_WARNING_SECONDS", default=3600)
# The platform's share of every settlement, in basis points (0 to 2000), fixed per lease when it
# opens. On chain the escrow's owner sets it (chain_set_fee) and it is paid to PLATFORM_FEE_RECIPIENT
# (an address of the platform's own, linked to no user; the owner's by default).
PLATFORM_FEE_BPS = env.int("PLATFORM_FEE_BPS", default=0)
if not 0 <= PLATFORM_FEE_BPS <= 2000:
    raise ImproperlyConfigured("PLATFORM_FEE_BPS must be from 0 to 2000 basis points.")
PLATFORM_FEE_RECIPIENT = env.str("PLATFORM_FEE_RECIPIENT", default="")
# When a lease's paid time runs out its workload is stopped but kept this long for a top-up.
LEASE_GRACE_SECONDS = env.int("LEASE_GRACE_SECONDS", default=1800)
# Email (notifications): the console in development, SMTP (EMAIL_URL) in production.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
globals().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="GPU Market <noreply@localhost>")
# Webhooks: private and loopback targets are refused unless this allows them (tests, labs).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=10)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
# The settlement tick: how often running leases pay their providers, and how many leases one
# on-chain settle call carries.
SETTLEMENT_INTERVAL_SECONDS = env.int("SETTLEMENT_INTERVAL_SECONDS", default=300)
SETTLEMENT_BATCH_SIZE = env.int("SETTLEMENT_BATCH_SIZE", default=200)
# Seconds after the last usage report that are paid as running, when that report showed the
# workload running to its end (the report covering them may arrive after the lease closed).
USAGE_TAIL_SECONDS = env.int("USAGE_TAIL_SECONDS", default=120)
# How far in the future a usage period may end (clock skew between agent and marketplace).
USAGE_CLOCK_SKEW_SECONDS = env.int("USAGE_CLOCK_SKEW_SECONDS", default=30)

# --- Logging --------------------------------------------------------------------------------
# Logs: plain text for people (the default), or one JSON object a line (LOG_FORMAT=json) for a log
# pipeline; the stdlib's records and their ``extra`` fields go through structlog's formatter.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
_LOG_CHAIN = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": _LOG_CHAIN,
            "processors": [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
