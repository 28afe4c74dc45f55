# atkproxy: the sidecar image. Build: podman build -t atkproxy .
#   --build-arg BASE_IMAGE=...  any image with python3 (3.11+) and its venv module (the e2e
#                               uses a Debian bookworm base made with debootstrap)
ARG BASE_IMAGE=docker.io/library/python:3.11-slim

# Stage 1: a wheel of the project, installed with the pinned dependencies into a virtualenv.
FROM ${BASE_IMAGE} AS build
# Where pip finds packages and whom it trusts, for builds behind a TLS-inspecting proxy: pass
# the host's CA bundle mounted over this path (podman build --volume), never in a layer.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY atkproxy ./atkproxy
RUN python3 -m venv /opt/atkproxy \
    && /opt/atkproxy/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /src/dist . \
    && /opt/atkproxy/bin/pip install --no-cache-dir --constraint constraints.txt /src/dist/*.whl \
    && /opt/atkproxy/bin/pip uninstall --yes pip setuptools \
    && find /opt/atkproxy -name __pycache__ -prune -exec rm -rf {} + \
    && /opt/atkproxy/bin/python -m compileall -q /opt/atkproxy/lib

# Stage 2: the same base with the virtualenv only: no sources, wheels, build tools or caches.
FROM ${BASE_IMAGE}
# Literal values, so hadolint can check them; a test keeps the version equal to pyproject.toml's.
LABEL org.opencontainers.image.title="atkproxy" \
      org.opencontainers.image.description="Sidecar reverse proxy that gives a synchronous workflow service Automatiko's asynchronous mode" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://example.org/atkproxy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/atkproxy /opt/atkproxy
# The job store's directory: the working directory, so the default relative
# store.url (sqlite:///atkproxy-jobs.db) lands on the volume mounted here.
RUN mkdir -p /var/lib/atkproxy /etc/atkproxy && chown 65532:65532 /var/lib/atkproxy
ENV PATH=/opt/atkproxy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/atkproxy
USER 65532:65532
EXPOSE 8080
# `serve` reads /etc/atkproxy/config.yaml when one is mounted, else runs on the defaults.
ENTRYPOINT ["atkproxy"]
CMD ["serve"]
