# syntax=docker/dockerfile:1
# The `carrierhub` binary in a small runtime image. Build from the repository root:
#   docker build -t carrierhub:dev .
# One image runs every role: `carrierhub serve --role api|worker|relay|webhooks|warehouse`,
# `carrierhub migrate`, `carrierhub keys …`. See docs/deploy.md.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src

# Dependencies first, in a layer of their own: the manifests and the lock file with stub
# sources, so that a change to CarrierHub's code does not rebuild the dependency tree.
# (.ci/deploy-check fails when a crate of the workspace is missing here.)
COPY Cargo.toml Cargo.lock ./
COPY crates/api/Cargo.toml crates/api/
COPY crates/broker/Cargo.toml crates/broker/
COPY crates/cli/Cargo.toml crates/cli/
COPY crates/formats/Cargo.toml crates/formats/
COPY crates/mapping/Cargo.toml crates/mapping/
COPY crates/model/Cargo.toml crates/model/
COPY crates/pipeline/Cargo.toml crates/pipeline/
COPY crates/store/Cargo.toml crates/store/build.rs crates/store/
COPY crates/synth/Cargo.toml crates/synth/
COPY crates/warehouse/Cargo.toml crates/warehouse/
RUN for crate in crates/*/; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
    && echo 'fn main() {}' > crates/cli/src/main.rs \
    && cargo build --release --locked -p carrierhub \
    && rm -rf crates/*/src

# Then CarrierHub itself. The sources are touched so that cargo does not take the stubs'
# build for theirs.
COPY crates crates
COPY examples examples
RUN find crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p carrierhub \
    && install -m 0755 target/release/carrierhub /usr/local/bin/carrierhub

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: HTTPS to OIDC providers' key sets and to webhook receivers.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 carrierhub \
    && useradd --system --uid 10001 --gid carrierhub --home-dir /data --shell /usr/sbin/nologin carrierhub \
    && mkdir -p /data \
    && chown carrierhub:carrierhub /data

COPY --from=builder /usr/local/bin/carrierhub /usr/local/bin/carrierhub
COPY deploy/docker/healthcheck /usr/local/bin/carrierhub-healthcheck

# Listen on every interface inside the container (the API refuses a non-loopback address
# unless API keys or OIDC are configured: see docs/operations.md), logs as JSON lines.
ENV CARRIERHUB_DATA_DIR=/data \
    CARRIERHUB_BIND=0.0.0.0:8080 \
    CARRIERHUB_ADMIN_BIND=0.0.0.0:9090 \
    CARRIERHUB_LOG_FORMAT=json

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# 8080: the API (and its /metrics); 9090: /metrics and /healthz of a process without the API.
EXPOSE 8080 9090
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/carrierhub-healthcheck"]
ENTRYPOINT ["carrierhub"]
CMD ["serve"]
