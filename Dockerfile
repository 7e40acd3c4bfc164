# syntax=docker/dockerfile:1

# One static binary for every role (serve, gateway, node, bridge, mailer,
# migrate, users, keys); the command picks the role.
#
#   docker build -t usher:local .
#   docker run --env-file .env -p 8080:8080 usher:local            # serve
#   docker run --env-file .env usher:local node

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /usher ./cmd/usher

# No shell, no package manager: CA certificates, tzdata and a non-root user
# (65532) only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /usher /usher
USER nonroot:nonroot
# serve keeps its local files (USHER_DATA_DIR, by default .usher-data:
# development keys, embedded JetStream store) under the working directory:
# the non-root user's home is writable.
WORKDIR /home/nonroot
# In a container the listeners must not stay on loopback.
ENV USHER_HTTP_ADDR=0.0.0.0:8080 \
    USHER_ADMIN_ADDR=0.0.0.0:9090
EXPOSE 8080 9090
ENTRYPOINT ["/usher"]
CMD ["serve"]
