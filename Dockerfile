# syntax=docker/dockerfile:1
# EdgeFarm images. The wheel is built once, in the builder stage, from the build context
# mounted read-only; the final stages install it into python:3.11-slim with no compiler and
# run as the unprivileged user "edgefarm". Nothing is installed when a container starts.
#   docker build --target server -t edgefarm-server .   (the default: the last stage)
#   docker build --target agent  -t edgefarm-agent  .   (a PC agent)
# docker-compose.yml builds both. tests/packaging/test_deploy.py runs this file's build,
# install and start commands outside a container (Docker itself is not in the test suite).

FROM python:3.11-slim AS builder
WORKDIR /build
RUN --mount=type=bind,target=/src,readonly \
    DIST_EXTRA_CONFIG=/src/deploy/build.cfg python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 EDGEFARM_DATA_DIR=/var/lib/edgefarm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/edgefarm --create-home edgefarm
WORKDIR /var/lib/edgefarm

FROM runtime AS agent
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir "$(ls /wheels/edgefarm-*.whl)[agent]"
USER edgefarm
ENTRYPOINT ["edgefarm-agent"]
CMD ["run", "--config", "/var/lib/edgefarm/agent.toml"]

FROM runtime AS server
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir "$(ls /wheels/edgefarm-*.whl)[server,postgres]"
USER edgefarm
EXPOSE 8000
ENTRYPOINT ["edgefarm-server"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
