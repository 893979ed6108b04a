# syntax=docker/dockerfile:1
# The keycontacts image: every service binary (kc-identity, kc-contacts, ...) in one minimal
# runtime image; each Deployment picks its binary with `command:` (deploy/base/*).
#
#   docker build -t keycontacts:dev .
#
# Build stage: the workspace's locked dependency set (Cargo.lock, --locked), release profile.
# Protos are compiled by protox, so no protoc is needed.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --exclude xtask --bins \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -executable -name 'kc-*' -exec cp {} /out/ \; \
 && ls -l /out

# Runtime stage: glibc and libgcc only (the binaries need nothing else: no OpenSSL), no shell,
# no package manager; runs as the unprivileged user 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# Each service's default port; the Deployments set KC_LISTEN to 0.0.0.0:<port>.
EXPOSE 50050 50051 50052 50053 50054
ENTRYPOINT []
CMD ["kc-identity", "--help"]
