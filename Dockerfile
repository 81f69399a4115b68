# vid: nginx 1.28 + the vid module, running the default origin config.
#   docker build -t vid .
#   docker run --rm -p 1935:1935 -p 8080:8080 -p 8189-8196:8189-8196/udp vid
# WHIP media: UDP 8189 + worker number, announced as 127.0.0.1 (publishers on this host);
# for others, mount a config whose hls_live_whip_candidate is the host's address.
# The image is a thin wrapper over the same scripts the README uses. The base images are
# the public ones; BUILDER_IMAGE / RUNTIME_IMAGE select others (scripts/test-image.sh
# builds with locally made bases).

ARG BUILDER_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
RUN scripts/deps.sh build && VID_PROFILE=release scripts/build.sh

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcre2-8-0 libssl3 zlib1g libcrypt1 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system vid && useradd --system --gid vid --home-dir /var/lib/vid --no-create-home vid
COPY --from=build /src/build/sbin/nginx /usr/local/sbin/nginx
COPY --from=build /src/build/modules/libvid.so /usr/local/lib/vid/libvid.so
COPY --from=build /src/build/www /usr/share/vid/www
COPY nginx-conf/vid.conf /etc/vid/nginx.conf
# Runs as the unprivileged user vid: no `user` directive, ports above 1024, and every
# path nginx writes (media, temp folders, pid) owned by vid. Logs go to stdout/stderr.
RUN mkdir -p /var/lib/vid /etc/vid/logs /etc/vid/temp \
 && chown -R vid:vid /var/lib/vid /etc/vid/logs /etc/vid/temp \
 && sed -i -e 's#load_module modules/libvid.so;#load_module /usr/local/lib/vid/libvid.so;#' \
           -e 's#listen 127.0.0.1:#listen #' \
           -e 's#error_log logs/error.log notice;#error_log /dev/stderr notice;#' \
           -e 's#pid logs/nginx.pid;#pid /etc/vid/temp/nginx.pid;#' \
           -e 's#access_log logs/hls_access.log vid_hls;#access_log /dev/stdout vid_hls;#' \
           -e 's#hls_live_whip_udp 127.0.0.1:8189;#hls_live_whip_udp 0.0.0.0:8189;\n    hls_live_whip_candidate 127.0.0.1;#' \
           -e 's#^http {#http {\n    client_body_temp_path /etc/vid/temp/client_body;\n    proxy_temp_path /etc/vid/temp/proxy;\n    fastcgi_temp_path /etc/vid/temp/fastcgi;\n    uwsgi_temp_path /etc/vid/temp/uwsgi;\n    scgi_temp_path /etc/vid/temp/scgi;#' \
           /etc/vid/nginx.conf
USER vid
EXPOSE 1935 8080 8189-8196/udp
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8080/streams.json || exit 1
CMD ["/usr/local/sbin/nginx", "-p", "/etc/vid", "-c", "nginx.conf", "-e", "/dev/stderr", "-g", "daemon off;"]
