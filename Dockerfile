# Production image: non-root, several workers, HEALTHCHECK; run `sharedcare db upgrade` as its own step.
# Several containers behind one base URL must share /app/var/keys (a volume: token-signing keys and the
# server secret) or at least SHAREDCARE_SECRET, so that a paging link from one container works on another.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY service ./service
COPY consent ./consent
COPY fhir_profiles ./fhir_profiles
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
RUN groupadd --system sharedcare && useradd --system --gid sharedcare --home /app sharedcare \
    && mkdir -p /app/var && chown sharedcare:sharedcare /app/var
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH SHAREDCARE_VAR_DIR=/app/var PYTHONUNBUFFERED=1
WORKDIR /app
USER sharedcare
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["sharedcare", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
