# syntax=docker/dockerfile:1
# Build stage: build a wheel and install it with its dependencies into a virtualenv.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/marvin
COPY pyproject.toml README.md ./
COPY marvin ./marvin
RUN /opt/marvin/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/marvin/bin/pip install --no-cache-dir .

# Runtime stage: the virtualenv, the migrations and the example config; no compilers.
FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 marvin
COPY --from=build /opt/marvin /opt/marvin
COPY migrations /app/migrations
COPY config.example.yaml /app/config.example.yaml
COPY demo /app/demo
ENV PATH=/opt/marvin/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MARVIN_MIGRATIONS_DIR=/app/migrations \
    MARVIN_CONFIG=/app/config.example.yaml \
    MARVIN_DATABASE__URL=sqlite+aiosqlite:////data/marvin.db
RUN mkdir /data && chown marvin /data
WORKDIR /app
USER marvin
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)" || exit 1
CMD ["marvin", "serve"]
