# Marvin's image: `marvin serve` as a non-root user, SQLite on the /data volume by default,
# the schema brought to head on start (database.migrate_on_start), a read-only root
# filesystem given writable /data and /tmp. Build it with `make image` (docker or podman, in
# Docker format so that HEALTHCHECK is kept); `make image-test` runs it.

# The package version (pyproject.toml); `make image` passes it and the build refuses a
# mismatch, so the labels always say what `marvin --version` prints.
ARG VERSION=0.1.0
ARG REVISION=unknown

# Build stage: the dependencies first (a layer that survives code changes), then Marvin.
FROM python:3.11-slim AS build
ARG VERSION
WORKDIR /src
RUN python -m venv /opt/marvin
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/marvin/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY README.md ./
COPY marvin ./marvin
RUN /opt/marvin/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && installed=$(/opt/marvin/bin/marvin --version | awk '{print $2}') \
 && if [ "$installed" != "$VERSION" ]; then \
      echo "build with --build-arg VERSION=$installed (make image does): the labels would say $VERSION" >&2; exit 1; \
    fi \
 && /opt/marvin/bin/python -m pip uninstall --yes --quiet pip setuptools wheel \
 && /opt/marvin/bin/python -m compileall -q -j 0 /opt/marvin/lib

# Runtime stage: the virtualenv, the migrations and the example config; no compilers.
FROM python:3.11-slim
# Numeric user and group, so that Kubernetes' runAsNonRoot can check it; its home is /data
# (`marvin shell` keeps its history there).
RUN groupadd --gid 10001 marvin \
 && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --no-log-init \
      --shell /usr/sbin/nologin marvin \
 && mkdir /data && chown 10001:10001 /data && chmod 0750 /data
COPY --from=build /opt/marvin /opt/marvin
COPY migrations /app/migrations
COPY config.example.yaml /app/config.example.yaml
COPY demo /app/demo
# Bytecode is compiled here, at build time: nothing writes under / when the image runs.
RUN python -m compileall -q /app/migrations
ENV PATH=/opt/marvin/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MARVIN_MIGRATIONS_DIR=/app/migrations \
    MARVIN_CONFIG=/app/config.example.yaml \
    MARVIN_DATABASE__URL=sqlite+aiosqlite:////data/marvin.db \
    MARVIN_DATABASE__MIGRATE_ON_START=true
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MARVIN_SLACK__PORT', '3000'), timeout=4)"]
CMD ["marvin", "serve"]
# Last, so that a new commit rebuilds only these.
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="marvin" \
      org.opencontainers.image.description="Marvin: a ChatOps bot that guards production from the #production channel" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
