# Debian's docker-registry (CNCF distribution 2.x), FROM scratch: its binary and exactly the
# shared libraries it links. build-images.sh writes the context: rootfs/ (/usr/bin/docker-registry,
# each library at the path `ldd` names, /etc/nsswitch.conf, /etc/passwd, /etc/group) and empty/,
# an empty directory. docker-compose.yml mounts its configuration.
FROM scratch
COPY rootfs/ /
# Owned by nobody here, so a fresh named volume mounted on it is too.
COPY --chown=65534:65534 empty/ /var/lib/registry/
USER 65534:65534
EXPOSE 5000
ENTRYPOINT ["/usr/bin/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
