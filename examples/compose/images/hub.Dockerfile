# pht-hub, FROM scratch: its binary and exactly the shared libraries it links, nothing else.
# build-images.sh writes the context: rootfs/ (/usr/local/bin/pht-hub, each library at the path
# `ldd` names, /etc/nsswitch.conf, /etc/passwd, /etc/group) and empty/, an empty directory.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 empty/ /tmp/
# Owned by nobody here, so a fresh named volume mounted on it is too (Docker copies the
# directory's owner into an empty volume).
COPY --chown=65534:65534 empty/ /var/lib/pht-hub/
USER 65534:65534
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pht-hub"]
CMD ["serve", "--config", "/etc/pht-hub/hub.yaml"]
