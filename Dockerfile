# syntax=docker/dockerfile:1
# edsync: a static binary on a distroless base, running as a non-root user.
#
# Reproducible: the bases are pinned by digest, the build trims paths and
# embeds no time, and BuildKit takes every timestamp from SOURCE_DATE_EPOCH.
# Both architectures, pushed (the README's Install):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(git describe --always) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) \
#     --output type=image,name=REGISTRY/edsync:TAG,push=true,rewrite-timestamp=true .
#
# The build stage runs on the builder's platform and cross-compiles.
# test/e2e/docker_test.go (TestImage) builds this binary with the RUN line
# below and an OCI image layout from the final stage, checks both are
# reproducible, and runs the entrypoint as USER.
#
# The digests are the multi-platform indexes of these tags when last pinned;
# to move them: `crane digest golang:1.26.8` (or `docker buildx imagetools
# inspect`), and the same for the distroless tag.
FROM --platform=$BUILDPLATFORM golang:1.26.8@sha256:0f063af2d465d8dcae54cce04278ada488b96f77b42449c8d071e47d016cc65a AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS TARGETARCH
# TestImage runs this very line, with /out/edsync replaced: keep it one line
# starting "RUN CGO_ENABLED=0 ".
# CGO off: a static binary, no libc needed (the distroless static base has
# none). -trimpath and -buildvcs=false: nothing of the build machine or the
# checkout in the binary, so the same sources give the same bytes.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/edsync .

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/edsync /edsync
# 65532 is distroless' nonroot user, numeric so that a runtime (and
# runAsNonRoot) need no /etc/passwd to know it is not root. Envoy reads the
# files, so the shared volume must be readable by Envoy's user: edsync
# writes them 0644.
USER 65532:65532
# edsync's /metrics, /healthz and /readyz (--http-addr).
EXPOSE 9911
ENTRYPOINT ["/edsync"]
