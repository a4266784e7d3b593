# syntax=docker/dockerfile:1
# bnserve container image: bnserve-trainer, bnserve-inference and bnctl.
#
#   docker build -t bnserve .                     # or: buildah bud / podman build
#   docker run -p 127.0.0.1:50052:50052 -v bnserve-store:/var/lib/bnserve/store bnserve
#   docker run -p 127.0.0.1:50051:50051 -v bnserve-store:/var/lib/bnserve/store bnserve bnserve-trainer
#
# The default command is the inference server; pass `bnserve-trainer` or
# `bnctl ...` to run the others. Every server flag can be given as an
# environment variable BNSERVE_<FLAG> (BNSERVE_STORE, BNSERVE_PORT,
# BNSERVE_METRICS_PORT, BNSERVE_MODELS, BNSERVE_TOKEN_FILE, ...). See
# deploy/README.md.
#
# Build arguments:
#   BNSERVE_RUN_TESTS=1   run ctest in the builder stage (0 skips it)
#   BNSERVE_CTEST_ARGS    extra ctest arguments, e.g. "-L unit" or "-E slow"

############################ builder ############################
FROM docker.io/library/debian:bookworm AS builder

# The same dependency script CI uses; its own layer so that source changes
# do not reinstall packages.
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

ARG BNSERVE_RUN_TESTS=1
ARG BNSERVE_CTEST_ARGS=""
# Release build with the tests, then the test suite (redis-server is installed
# by install-deps.sh, so the Redis store tests run here too). Warnings are
# CI's job (-Werror there), not a reason to fail an image build. ccache is
# kept in a build cache mount between builds where the builder supports it.
RUN --mount=type=cache,target=/root/.cache/ccache \
    BUILD_TYPE=Release BUILD_DIR=/build bash scripts/build.sh \
        -DBNSERVE_WERROR=OFF \
        -DBNSERVE_BUILD_TESTS=$([ "$BNSERVE_RUN_TESTS" = 1 ] && echo ON || echo OFF) \
 && if [ "$BNSERVE_RUN_TESTS" = 1 ]; then \
      (cd /build && ctest --output-on-failure -j"$(nproc)" --timeout 600 $BNSERVE_CTEST_ARGS); \
    fi \
 && mkdir -p /out \
 && install -m 0755 -s /build/server/trainer/bnserve-trainer \
                       /build/server/inference/bnserve-inference \
                       /build/client/bnctl/bnctl /out/ \
 && install -m 0755 /src/deploy/bnserve-healthcheck /out/

############################ runtime ############################
FROM docker.io/library/debian:bookworm-slim

# Only the shared libraries the three binaries link against (the build
# fails below if one is missing) and CA roots for TLS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libhiredis0.14 libssl3 \
      libcpp-httplib0.11 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user; the file store lives under its home by default.
RUN groupadd --system --gid 10001 bnserve \
 && useradd --system --uid 10001 --gid bnserve --home-dir /var/lib/bnserve \
      --shell /usr/sbin/nologin bnserve \
 && install -d -o bnserve -g bnserve -m 0750 /var/lib/bnserve /var/lib/bnserve/store

COPY --from=builder /out/ /usr/local/bin/
# Demo data, so `bnctl train --data /usr/share/bnserve/data/digits/train.csv`
# works from inside the image.
COPY data/ /usr/share/bnserve/data/
RUN if ldd /usr/local/bin/bnserve-trainer /usr/local/bin/bnserve-inference \
         /usr/local/bin/bnctl | grep 'not found'; then \
      echo 'runtime image lacks a shared library' >&2; exit 1; \
    fi

USER bnserve:bnserve
WORKDIR /var/lib/bnserve
ENV BNSERVE_STORE=/var/lib/bnserve/store \
    BNSERVE_LOG_LEVEL=info

# 50051 trainer gRPC, 8001 trainer dashboard and /metrics, 50052 inference
# gRPC, 8000 inference KServe v2 REST and dashboard, 9090 inference
# Prometheus metrics.
EXPOSE 50051 8001 50052 8000 9090

# grpc.health.v1 via bnctl on the port of whichever server is running. An
# inference server reports NOT_SERVING (unhealthy) until its models are
# loaded, i.e. until a first version has been published.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bnserve-healthcheck"]

# Both servers run as PID 1: they block SIGTERM/SIGINT and sigwait for them,
# then drain in-flight calls and exit 0. Give them >= 15 s to stop
# (docker stop -t 30, compose stop_grace_period, k8s terminationGracePeriod).
STOPSIGNAL SIGTERM
CMD ["bnserve-inference"]
