# Both images start from scratch: no registry is needed to build them.
# Built by `make images` (the context is filtered by .dockerignore).

FROM scratch AS dtr
ARG VERSION
COPY build/rootfs/etc/ /etc/
# restore spools the backup here ($TMPDIR) and verifies it before any change.
COPY build/rootfs/tmp /tmp
COPY bin/dtr /dtr
LABEL com.docker.dtr.version=$VERSION com.docker.dtr.role=installer
# The installer talks to the engine socket, which only root (or the docker
# group of the host, whose GID differs per host) may open.
USER 0:0
ENTRYPOINT ["/dtr"]
CMD ["--help"]

FROM scratch AS dtr-registry
ARG VERSION
COPY build/rootfs/etc/ /etc/
# Volumes mounted here start with this owner, so the replica runs unprivileged.
COPY --chown=10001:10001 build/rootfs/var/lib/dtr /var/lib/dtr
COPY --chown=10001:10001 build/rootfs/storage /storage
COPY bin/dtr-registry /dtr-registry
LABEL com.docker.dtr.version=$VERSION com.docker.dtr.role=registry
USER 10001:10001
ENV DTR_DATA_DIR=/var/lib/dtr
EXPOSE 8080 8443
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/dtr-registry", "healthcheck"]
ENTRYPOINT ["/dtr-registry"]
CMD ["serve"]
