# vid: nginx 1.28 + the vid module, running the default origin config.
#   docker build -t vid .
#   docker run --rm -p 1935:1935 -p 8080:8080 vid
# The image is a thin wrapper over the same scripts the README uses.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/deps.sh build && scripts/build.sh

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcre2-8-0 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/sbin/nginx /usr/local/sbin/nginx
COPY --from=build /src/build/modules/libvid.so /usr/local/lib/vid/libvid.so
COPY --from=build /src/build/www /usr/share/vid/www
COPY nginx-conf/vid.conf /etc/vid/nginx.conf
RUN mkdir -p /var/lib/vid /var/log/vid /etc/vid/logs \
 && chown nobody:nogroup /var/lib/vid \
 && sed -i -e 's#load_module modules/libvid.so;#load_module /usr/local/lib/vid/libvid.so;#' \
           -e 's#listen 127.0.0.1:#listen #' \
           -e 's#error_log logs/error.log notice;#error_log /dev/stderr notice;#' /etc/vid/nginx.conf
EXPOSE 1935 8080
STOPSIGNAL SIGQUIT
CMD ["/usr/local/sbin/nginx", "-p", "/etc/vid", "-c", "nginx.conf", "-e", "/dev/stderr", "-g", "daemon off;"]
