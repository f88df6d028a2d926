# syntax=docker/dockerfile:1
# The marketplace: one image for every process (web, WebSockets, Celery worker and beat, migrations).
# The base is pinned to a patch release; pin its digest too where your registry policy asks for it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/base.lock /tmp/base.lock
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/base.lock
WORKDIR /app
COPY manage.py pyproject.toml ./
COPY config/ config/
COPY core/ core/
COPY notifications/ notifications/
COPY chain/ chain/
COPY providers/ providers/
COPY leases/ leases/
COPY trust/ trust/
COPY marketplace/ marketplace/
COPY payments/ payments/
COPY templates/ templates/
RUN SECRET_KEY=collectstatic-only DEBUG=false /opt/venv/bin/python manage.py collectstatic --no-input \
 && /opt/venv/bin/python -m compileall -q /app

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DJANGO_SETTINGS_MODULE=config.settings
WORKDIR /app
USER 10001:10001
EXPOSE 8000 8001
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"]
