# syntax=docker/dockerfile:1
#
# bloscar sidecar image:  docker build -t bloscar:dev .
#
# The runtime stage is distroless: no shell, no package manager. The process runs as the
# numeric non-root user 65532 and writes nothing to its filesystem.

ARG RUST_VERSION=1.95
# distroless/cc: glibc, libgcc_s and libstdc++ (the Snappy codec inside Blosc is C++),
# matching the bookworm builder's glibc.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- skeleton: the manifests plus every .rs file emptied to a placeholder --------------
# Its output changes only when Cargo.toml, Cargo.lock or the set of source files changes,
# so the dependency layer below stays cached across ordinary code changes.
FROM rust:${RUST_VERSION}-slim-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN find . -type f ! -name '*.rs' ! -name Cargo.toml ! -name Cargo.lock -delete \
    && echo 'fn main() {}' > /tmp/placeholder.rs \
    && find . -type f -name '*.rs' -exec cp /tmp/placeholder.rs {} \;

# --- dependencies: compiled once per manifest change -----------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS dependencies
WORKDIR /src
COPY --from=skeleton /src ./
RUN cargo build --release --locked --bin bloscar

# --- build: the project's own code ------------------------------------------------------
FROM dependencies AS build
COPY . .
# The placeholders were compiled after the real files' recorded mtimes: make cargo see the
# real sources as newer.
RUN find . -path ./target -prune -o -type f -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin bloscar \
    && install -D -m 0755 target/release/bloscar /out/bloscar

# --- runtime -------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="bloscar" \
      org.opencontainers.image.description="gRPC sidecar that compresses tensor payloads in flight with Blosc" \
      org.opencontainers.image.source="https://github.com/bloscar/bloscar" \
      org.opencontainers.image.documentation="https://github.com/bloscar/bloscar/blob/main/docs/kubernetes.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bloscar" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/bloscar /bloscar
# glibc's malloc, tuned so that the memory the budget (BLOSCAR_MEMORY_BUDGET) gives back
# goes back to the system: by default each thread that frees a large buffer gets an arena
# of its own, and after the first large buffer is freed the mmap threshold rises to its
# size, so later chunk-sized buffers stay in the arenas when freed; after a burst of
# large messages the RSS stayed at 2-3x what the budget had charged
# (docs/hostile-traffic.md). Two arenas, and buffers of 1 MiB and more (chunks and what
# they become) mapped and unmapped on their own; a lower threshold also maps the
# smaller buffers, which cost a third more CPU per call for page faults.
ENV MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576
# 65532 is distroless' "nonroot"; numeric so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# 9440 inbound (the pod's service port), 9441 outbound (loopback, for the local client),
# 9449 admin (/live /ready /metrics).
EXPOSE 9440 9441 9449
ENTRYPOINT ["/bloscar"]
