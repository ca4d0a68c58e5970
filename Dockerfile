# nightcrew: one image for the web app (`serve`, the default) and the workers (`worker`).
#
#   docker build -t nightcrew .
#   docker build --build-arg BASE_IMAGE=localhost/nightcrew-base:KEY -t nightcrew .   # a local base
#
# The base needs Python >= 3.11 with venv, git and CA certificates; the default is Debian's
# official Python image. Nothing but the virtualenv leaves the builder: no compiler, no pip
# cache, no build frontend in the final image. Deployment, the sandbox inside a container and
# the trade-offs: docs/deploy.md.
#
# pip reaches its index as the build machine does, through two optional build secrets that never
# land in a layer: `pip-index` (a file holding PIP_INDEX_URL, which may carry credentials) and
# `pip-ca` (a CA bundle, for a TLS-intercepting proxy), e.g.
#   docker build --secret id=pip-ca,src=/path/to/ca-bundle.crt .
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/nightcrew
WORKDIR /src
# The dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
# (Empty package directories and README: `pip install .` installs the dependencies, no code.)
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip-index --mount=type=secret,id=pip-ca \
    set -e; \
    if [ -s /run/secrets/pip-index ]; then PIP_INDEX_URL=$(cat /run/secrets/pip-index); export PIP_INDEX_URL; fi; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    mkdir -p github_app runner devhub; touch README.md; \
    /opt/nightcrew/bin/pip install --quiet --upgrade pip "setuptools>=68" wheel; \
    /opt/nightcrew/bin/pip install --quiet --no-build-isolation .
COPY README.md ./
COPY github_app ./github_app
COPY runner ./runner
COPY devhub ./devhub
# The code: a wheel built offline with the build tools installed above, put over the stub.
RUN set -e; \
    /opt/nightcrew/bin/pip wheel --quiet --no-deps --no-build-isolation --no-index --wheel-dir /tmp/dist .; \
    /opt/nightcrew/bin/pip install --quiet --no-deps --no-index --force-reinstall /tmp/dist/nightcrew-*.whl; \
    /opt/nightcrew/bin/nightcrew --help >/dev/null

FROM ${BASE_IMAGE}
# git is nightcrew's own dependency; Debian's slim Python images lack it (a local base has it).
RUN if ! command -v git >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
# A fixed uid, so a host directory or volume can be handed to it; home is the data dir.
RUN echo 'nightcrew:x:10001:10001:nightcrew:/var/lib/nightcrew:/usr/sbin/nologin' >>/etc/passwd \
    && echo 'nightcrew:x:10001:' >>/etc/group \
    && mkdir -p /var/lib/nightcrew && chown 10001:10001 /var/lib/nightcrew
COPY --from=builder /opt/nightcrew /opt/nightcrew
ENV PATH=/opt/nightcrew/bin:$PATH \
    NIGHTCREW_DATA_DIR=/var/lib/nightcrew \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
# Workspaces, mirrors, event logs and (without REDIS_URL) the embedded Redis live here.
VOLUME /var/lib/nightcrew
WORKDIR /var/lib/nightcrew
USER 10001:10001
EXPOSE 8000
# The web app's own answer: /healthz is 200 with {"ok": true} only while Redis answers. A worker
# container overrides this (compose.yaml checks its heartbeat in Redis instead).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import json, sys, urllib.request; sys.exit(0 if json.load(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)).get('ok') else 1)"]
ENTRYPOINT ["nightcrew"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
