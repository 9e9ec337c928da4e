# pht-station, FROM scratch: its binary and exactly the shared libraries it links, nothing else.
# build-images.sh writes the context: rootfs/ (/usr/local/bin/pht-station, each library at the
# path `ldd` names, /etc/nsswitch.conf, /etc/passwd, /etc/group) and empty/, an empty directory.
FROM scratch
COPY rootfs/ /
COPY empty/ /tmp/
# Root inside the container: the daemon drives the host's Docker engine through its socket, which
# is root on the host in all but name anyway. The trains it starts run as uid 65534, sandboxed.
ENTRYPOINT ["/usr/local/bin/pht-station"]
CMD ["--help"]
