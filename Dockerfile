# The gantry image the Helm charts and kustomize manifests run: one static
# binary on a distroless base, as user 65532 (the charts' runAsUser).
# Build: docker build -t ghcr.io/gantry-dev/gantry:0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/gantry ./cmd/gantry

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gantry /usr/local/bin/gantry
USER 65532:65532
ENTRYPOINT ["gantry"]
