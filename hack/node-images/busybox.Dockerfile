# A tiny image for the real-node tier (tests/node): Debian's static busybox and
# its applets. It is the workspace image of the node tests and the pod sandbox
# ("pause") image of their containerd, whose default command sleeps forever.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-m", "1777", "/tmp"]
USER 65532:65532
CMD ["/bin/sleep", "2147483647"]
