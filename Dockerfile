# syntax=docker/dockerfile:1
#
# Rampart's images: static musl binaries on distroless, running as a non-root user (UID/GID 65532, which the Helm
# chart's securityContext expects; the root filesystem can be read-only).
#
#   docker build -t rampart-controller .                      # rampart-controller (entrypoint) and rampart-check
#   docker build --target check -t rampart-check .            # rampart-check alone, as its entrypoint: the image the
#                                                              # controller's check Jobs run (they pass only args)
#   docker build --target shadow -t rampart-shadow .          # the shadow pairing component (docs/shadow-pairing.md)
#
# Not built in this repository's CI (its build machines have no container engine), so keep it small and in step with
# the workspace's dependencies; the same cargo command, run outside a container with musl-tools installed, gives two
# static-pie binaries. The binaries need no C libraries at run time: TLS is rustls with ring (kube, reqwest, sqlx
# use no OpenSSL) and candle runs on the CPU. At build time ring and psm compile a little C and assembly through the
# `cc` crate, which for the musl target needs `musl-gcc` from musl-tools.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# SQLX_OFFLINE: the registry's query macros compile from the committed .sqlx/ data, without a database.
ENV SQLX_OFFLINE=true \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
        -p rampart-controller -p rampart-checks -p rampart-shadow \
        --bin rampart-controller --bin rampart-check --bin rampart-shadow \
    && mkdir -p /out \
    && cp target/x86_64-unknown-linux-musl/release/rampart-controller \
          target/x86_64-unknown-linux-musl/release/rampart-check \
          target/x86_64-unknown-linux-musl/release/rampart-shadow /out/

# rampart-check only, for the contract-check and smoke-evaluation Jobs.
FROM gcr.io/distroless/static-debian12:nonroot AS check
COPY --from=build /out/rampart-check /usr/local/bin/rampart-check
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/rampart-check"]

# rampart-shadow only: pairs the baseline's and the candidate's logged predictions for shadow steps.
FROM gcr.io/distroless/static-debian12:nonroot AS shadow
COPY --from=build /out/rampart-shadow /usr/local/bin/rampart-shadow
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rampart-shadow"]

# The default image: the controller, with rampart-check alongside for debugging and one-off checks.
FROM gcr.io/distroless/static-debian12:nonroot AS controller
COPY --from=build /out/rampart-controller /out/rampart-check /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rampart-controller"]
