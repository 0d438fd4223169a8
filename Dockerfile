# syntax=docker/dockerfile:1
# edsync: a static binary on a distroless base, running as a non-root user.
# Build: docker build -t edsync --build-arg VERSION=$(git describe --always) .
# (docker buildx build --platform linux/amd64,linux/arm64 ... cross-compiles:
# the build stage runs on the builder's platform.)
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS TARGETARCH
# test/e2e/docker_test.go (TestStaticBinary) runs this very line, with /out/edsync
# replaced: keep it one line starting "RUN CGO_ENABLED=0 ".
# CGO off: a static binary, no libc needed (the distroless static base has none).
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/edsync .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/edsync /edsync
# 65532 is distroless' nonroot user; test/e2e/docker_test.go runs the binary as the
# uid:gid written here. Envoy reads the files, so the shared volume must be
# readable by Envoy's user: edsync writes them 0644.
USER 65532:65532
# edsync's /metrics, /healthz and /readyz (--http-addr).
EXPOSE 9911
ENTRYPOINT ["/edsync"]
