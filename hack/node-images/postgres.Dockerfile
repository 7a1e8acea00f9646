# A stand-in for docker.io/library/postgres in the real-node tier (tests/node),
# which cannot pull from Docker Hub: Debian's PostgreSQL 15 on a root file
# system made by mmdebstrap (BASE), with an entrypoint that honours the same
# variables as the official image (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, PGDATA) and runs as uid 999 like it, so the chart's bundled
# PostgreSQL (and deploy/prewarm.yaml) runs unchanged.
ARG BASE
FROM ${BASE}
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN usermod -u 999 postgres && groupmod -g 999 postgres \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R 999:999 /var/lib/postgresql /var/run/postgresql \
 && chmod 0755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER 999:999
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
