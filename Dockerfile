# edsync: a static binary on a distroless base, running as a non-root user.
# Build: docker build -t edsync --build-arg VERSION=$(git describe --always) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/edsync .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/edsync /edsync
# 65532 is distroless' nonroot user. Envoy reads the files, so the shared
# volume must be readable by Envoy's user: edsync writes them 0644.
USER 65532:65532
ENTRYPOINT ["/edsync"]
