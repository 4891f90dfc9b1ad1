# storefront — container image.
#
#   docker build -t storefront:local .
#   docker run --rm -p 3000:3000 storefront:local        # dev mode: in-memory sessions
#
# docker-compose.yml runs the full demo: Redis, a one-shot `migrate`, three
# replicas and nginx in front of them.

############################ build stage ######################################
FROM rust:1-bookworm AS builder
WORKDIR /src

# If the code uses sqlx's compile-time checked query macros, they must not try
# to reach a database during `docker build`: use the prepared .sqlx/ data.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# 1) Dependencies only. Build the dependency graph against a stub crate, so this
#    (slow) layer is reused for as long as Cargo.toml and Cargo.lock do not change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src \
 && rm -rf target/release/.fingerprint/storefront-* \
           target/release/deps/storefront-* \
           target/release/deps/libstorefront-* \
           target/release/storefront* target/release/libstorefront*

# 2) The application. Templates and migrations are embedded at compile time
#    (askama, sqlx::migrate!), so they must be in the build context too.
#    .dockerignore keeps target/, .git, data/ and the like out.
COPY . .
# COPY keeps the files' original mtimes; touch them so cargo sees they changed
# since the stub build.
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked \
 && cp target/release/storefront /usr/local/bin/storefront \
 && /usr/local/bin/storefront --help >/dev/null

############################ runtime stage ####################################
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to a managed Redis (rediss://) if one is used.
# curl: container health checks (the slim image has no HTTP client).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed uid, so volume permissions are predictable.
RUN groupadd --system --gid 10001 storefront \
 && useradd --system --uid 10001 --gid storefront --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin storefront

WORKDIR /app
COPY --from=builder /usr/local/bin/storefront /usr/local/bin/storefront
# static/ is served from disk, relative to the working directory (./static).
COPY static ./static
# The SQLite file lives in /app/data: mount a volume there (compose: `appdata`).
RUN mkdir -p /app/data && chown storefront:storefront /app/data

USER storefront

ENV BIND=0.0.0.0 \
    PORT=3000 \
    DATABASE_URL=sqlite:///app/data/storefront.db \
    LOG_FORMAT=json \
    RUST_LOG=info

EXPOSE 3000
VOLUME ["/app/data"]

# Liveness only (/healthz touches no dependency). docker-compose.yml overrides
# this with /readyz, which also checks Redis and SQLite, to gate nginx's start.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT}/healthz" || exit 1

# The binary handles SIGTERM itself (graceful shutdown), so it can be PID 1.
STOPSIGNAL SIGTERM
CMD ["storefront", "serve"]
