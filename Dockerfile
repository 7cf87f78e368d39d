# licsync — multi-stage, non-root. Builds exactly what the README installs: `pip install .`
#
# Base image: pin it by digest when you build (`--build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:…`,
# the digest from `docker buildx imagetools inspect python:3.11-slim-bookworm`). The default below is
# pinned by its most specific stable tag (Python minor and Debian release): the machine this file was
# written on reaches no container registry, so no digest could be looked up and checked there.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY licsync ./licsync
RUN pip install --no-cache-dir --upgrade "pip>=24,<26" \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="licsync" \
      org.opencontainers.image.description="Keeps the license seats of a Microsoft 365 learning platform true to the tenant's directory." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary" \
      org.opencontainers.image.documentation="docs/deploy.md"
# uid/gid 10001: secret files mounted into the container must be readable by it
# (`install -o 10001 -g 10001 -m 0400 …`, see docs/deploy.md).
RUN groupadd --system --gid 10001 licsync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/licsync --create-home licsync \
 && install -d -o 10001 -g 10001 -m 0750 /etc/licsync
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --chown=10001:10001 config/licsync.example.toml /etc/licsync/licsync.example.toml
USER 10001:10001
WORKDIR /var/lib/licsync
# State (the SQLite database: `sqlite:////var/lib/licsync/licsync.db` in config/licsync.example.toml) lives on this volume.
VOLUME ["/var/lib/licsync"]
# Inside a container the API must listen on every interface, or `-p 8080:8080` reaches nothing.
# The environment wins over the file (LICSYNC_<SECTION>__<KEY>): `-e LICSYNC_API__LISTEN=…` changes it.
ENV LICSYNC_CONFIG=/etc/licsync/licsync.toml \
    LICSYNC_API__LISTEN=0.0.0.0:8080 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080
# `licsync healthcheck`: /healthz of the local API (run and serve), else the daemon's heartbeat (run --no-api).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["licsync", "healthcheck"]
ENTRYPOINT ["licsync"]
# The schema is created or migrated on start (replicas take turns on PostgreSQL's advisory lock).
CMD ["run", "--migrate"]
