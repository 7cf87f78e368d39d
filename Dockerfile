# licsync — multi-stage, non-root. Builds exactly what the README installs: `pip install .`
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY licsync ./licsync
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/licsync --create-home licsync
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/licsync
ENV LICSYNC_CONFIG=/etc/licsync/licsync.toml \
    PYTHONUNBUFFERED=1
EXPOSE 8080
# `licsync health` exits 0 while the daemon's heartbeat is fresh and the database answers.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["licsync", "health"]
ENTRYPOINT ["licsync"]
CMD ["run"]
