# meshbuy images on Debian bookworm, one Dockerfile, three stages that matter:
#
#   docker build -t meshbuy .                       runtime (the default, last stage):
#                                                   meshworker, meshbuy, meshctl, the catalog
#   docker build --target dev -t meshbuy-dev .      runtime + cloudsim, devkafka, meshbench
#                                                   and the cloudsim scenarios (dev, demo, CI)
#
# The runtime image carries no simulator, no fake Kafka and no scenario file (the scenarios
# hold the dev AK/SK), so nothing in production can be pointed at them by mistake.
# Build stage: the project's own dependency script and Makefile, so the image builds the way
# CI does.  The other stages: slim bookworm with only the shared libraries the binaries load.

FROM debian:bookworm AS build
WORKDIR /src
# ops/deps first, alone: the apt layer stays cached while the sources change.
COPY ops/deps /src/ops/deps
ENV MB_DEPS_PROFILE=build
RUN ops/deps && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN make -j"$(nproc)" all \
 && mkdir -p /out/runtime/bin /out/runtime/share/meshbuy /out/dev/bin /out/dev/share/meshbuy \
 && cp bin/meshworker bin/meshbuy bin/meshctl /out/runtime/bin/ \
 && cp -r schemas /out/runtime/share/meshbuy/schemas \
 && for b in cloudsim devkafka meshbench; do \
      if [ -x "bin/$b" ]; then cp "bin/$b" /out/dev/bin/; fi; \
    done \
 && cp -r ops/cloudsim/scenarios /out/dev/share/meshbuy/scenarios

# Shared base: the libraries, CA certificates, curl for the compose healthcheck, the user.
FROM debian:bookworm-slim AS base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libjansson4 libhiredis0.14 libssl3 libevent-2.1-7 libjemalloc2 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --uid 10001 meshbuy
# MESHBUY_HTTP_ADDR: the binaries default to 127.0.0.1 (safe on a laptop), which in a
# container would hide /healthz, /readyz and /metrics from probes and scrapers.
ENV MESHBUY_CATALOG=/usr/share/meshbuy/schemas/istio-catalog.json \
    MESHBUY_HTTP_ADDR=0.0.0.0 \
    MESHBUY_HTTP_PORT=9464
USER 10001
EXPOSE 9464
# The worker handles SIGTERM itself (drain); run it directly as PID 1, no shell wrapper.
STOPSIGNAL SIGTERM
CMD ["meshworker"]

# Dev image: everything of the runtime image plus the simulators and their scenarios.
FROM base AS dev
COPY --from=build /out/runtime/bin/ /usr/local/bin/
COPY --from=build /out/runtime/share/meshbuy/ /usr/share/meshbuy/
COPY --from=build /out/dev/bin/ /usr/local/bin/
COPY --from=build /out/dev/share/meshbuy/ /usr/share/meshbuy/

# Runtime image (last, so a plain `docker build` makes it): the worker and the two CLIs.
FROM base AS runtime
COPY --from=build /out/runtime/bin/ /usr/local/bin/
COPY --from=build /out/runtime/share/meshbuy/ /usr/share/meshbuy/
