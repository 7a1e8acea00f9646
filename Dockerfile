# syntax=docker/dockerfile:1
# The prewarm image: the operator (`prewarm run`, the default command) and the
# in-pod workspace agent (`prewarm agent`, for the sidecar: args: [agent]).
#   docker build -t prewarm:dev .
# Only the wheel and its locked dependencies reach the final image, in a venv at
# /opt/prewarm; no source tree, no build tools. The install steps live in
# hack/docker-install.sh, which tests/chart/test_image.py runs too.

# Pinned base (Debian 12, Python 3.11); both stages must use the same one, since
# the venv's interpreter is the base image's python3 (/usr/local/bin/python3 in
# the python images). Any Debian 12 base with python3 and python3-venv works:
# the real-node tests build it with mmdebstrap and pass it as
#   --build-arg PYTHON_IMAGE=localhost/prewarm-base:<hash>
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV=/opt/uv/bin/uv \
    PYTHON=python3
# uv in a venv of its own: the same step on the python images and on Debian's
# python3 (which refuses a system-wide pip install, PEP 668).
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY operator/ operator/
COPY migrations/ migrations/
COPY crds/ crds/
COPY hack/docker-install.sh /usr/local/bin/docker-install.sh
RUN docker-install.sh build /src /dist \
 && docker-install.sh install /dist /opt/prewarm

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="prewarm" \
      org.opencontainers.image.description="Keeps pools of prebuilt (warm) workspaces ready to claim." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/prewarm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/prewarm /opt/prewarm
# A numeric non-root user (no /etc/passwd entry needed): runAsNonRoot can verify it.
USER 65532:65532
WORKDIR /tmp
# 9090: Prometheus /metrics; 8080: kopf's liveness endpoint /healthz.
EXPOSE 9090 8080
ENTRYPOINT ["/opt/prewarm/bin/prewarm"]
CMD ["run"]
