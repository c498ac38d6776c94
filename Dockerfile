# Gooni: one static binary in a small non-root image.
#   docker build -t gooni .
#   docker run -p 127.0.0.1:8080:8080 -v gooni-data:/data gooni --demo
# The UI is prebuilt in dist/ (committed), so the build needs no Node.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gooni . \
 && mkdir -p /out/data && chown 65532:65532 /out/data

# distroless/static has no shell: deploys (GG_DEPLOY_COMMAND runs through
# sh -c) need an image with a shell and the modal CLI; see docs/OPERATIONS.md.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gooni /usr/local/bin/gooni
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV GG_ADDR=0.0.0.0:8080 GG_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/gooni", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gooni"]
