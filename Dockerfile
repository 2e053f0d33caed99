# Build: docker build -t corelane .
# Run:   docker run --rm --network host -v $PWD/my.toml:/etc/corelane/corelane.toml:ro corelane
# The control file is read from /etc/corelane/corelane.toml; send SIGHUP (docker kill -s HUP)
# to reload it.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin corelane \
 && mkdir -p /etc/corelane
COPY --from=build /src/target/release/corelane /usr/local/bin/corelane
COPY config/quickstart.toml /etc/corelane/corelane.toml
USER corelane
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/corelane"]
CMD ["run", "-c", "/etc/corelane/corelane.toml"]
