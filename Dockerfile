# Builds every Switchboard binary into one image; docker-compose.yml picks the command.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ucserver /src/target/release/ucadmin /src/target/release/ucclient /usr/local/bin/
COPY --from=build /src/target/release/mediaserver /src/target/release/ucweb /usr/local/bin/
EXPOSE 8080
CMD ["ucserver"]
