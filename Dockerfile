# switchyard with its shipped drivers, for users who have a Docker engine.
# Build: docker build -t switchyard .   Run with docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      -p switchyard-cli -p switchyard-driver-exec -p switchyard-driver-http -p switchyard-driver-ssh

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/switchyard --create-home switchyard
COPY --from=build /src/target/release/switchyard \
                  /src/target/release/switchyard-driver-exec \
                  /src/target/release/switchyard-driver-http \
                  /src/target/release/switchyard-driver-ssh /usr/local/bin/
# plugin.yaml files; each adapter is found next to the switchyard binary.
COPY drivers/exec/plugin.yaml /usr/share/switchyard/drivers/exec/plugin.yaml
COPY drivers/http/plugin.yaml /usr/share/switchyard/drivers/http/plugin.yaml
COPY drivers/ssh/plugin.yaml  /usr/share/switchyard/drivers/ssh/plugin.yaml
USER switchyard
WORKDIR /var/lib/switchyard
EXPOSE 8080
ENTRYPOINT ["switchyard", "serve", "--config", "/etc/switchyard/switchyard.toml"]
