# meshbuy image: meshworker, meshbuy, meshctl, cloudsim (and devkafka) on Debian bookworm.
#
#   docker build -t meshbuy:dev .
#
# Build stage: the project's own dependency script and Makefile, so the image builds the way
# CI does.  Runtime stage: slim bookworm with only the shared libraries the binaries load.

FROM debian:bookworm AS build
WORKDIR /src
# ops/deps first, alone: the apt layer stays cached while the sources change.
COPY ops/deps /src/ops/deps
ENV MB_DEPS_PROFILE=build
RUN ops/deps && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN make -j"$(nproc)" all \
 && mkdir -p /out/bin /out/share/meshbuy/scenarios \
 && cp bin/* /out/bin/ \
 && cp -r schemas /out/share/meshbuy/schemas \
 && if [ -d ops/cloudsim/scenarios ]; then cp -r ops/cloudsim/scenarios/. /out/share/meshbuy/scenarios/; fi

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libjansson4 libcurl4 libhiredis0.14 libssl3 libevent-2.1-7 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --uid 10001 meshbuy
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/share/meshbuy/ /usr/share/meshbuy/
ENV MESHBUY_CATALOG=/usr/share/meshbuy/schemas/istio-catalog.json \
    MESHBUY_HTTP_PORT=9464
USER meshbuy
EXPOSE 9464
# The worker handles SIGTERM itself (drain); run it directly as PID 1, no shell wrapper.
STOPSIGNAL SIGTERM
CMD ["meshworker"]
