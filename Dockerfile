# syntax=docker/dockerfile:1
# The gateway image for users who build with Docker, on the official multi-arch Envoy image
# (linux/amd64 and linux/arm64): `docker build -t duo-bedrock-gateway .` (add
# `--platform linux/arm64` for ARM). The same files at the same paths, the same user, ports,
# variables and entry point as `make image` (deploy/image.py), which builds the x86_64 image
# without Docker; tests/image.rs checks that the two agree. Not built by `make test` (no Docker
# daemon there). Runs as `docker run -p 5052:5052 -e AIGW_GITLAB_URL=... -e AWS_... <image>`.

ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0

# The filter (.wasm, any platform), the launcher and the emulator (native to the platform).
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip1
COPY . .
RUN cargo build --release --locked --target wasm32-wasip1 --lib \
 && cargo build --release --locked -p duo-bedrock-launcher -p bedrock-emulator

# Envoy 1.40.0 is the base image's /usr/local/bin/envoy.
FROM ${ENVOY_IMAGE}
COPY --from=build /src/target/release/duo-bedrock /usr/local/bin/duo-bedrock
COPY --from=build /src/target/release/bedrock-emulator /usr/local/bin/bedrock-emulator
COPY --from=build /src/target/wasm32-wasip1/release/duo_bedrock_filter.wasm /usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV ENVOY_BIN=/usr/local/bin/envoy \
    DUO_FILTER_WASM=/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm \
    DUO_EMULATOR_BIN=/usr/local/bin/bedrock-emulator \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="duo-bedrock-gateway" \
      org.opencontainers.image.description="GitLab AI Gateway drop-in: Envoy 1.40 + duo-bedrock proxy-wasm filter in front of Amazon Bedrock" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
EXPOSE 5052 8082
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/duo-bedrock"]
CMD ["run"]
