#!/usr/bin/env bash
# Give PostgreSQL a TLS certificate on first boot and switch TLS on.
#
# Runs as the PostgreSQL user with PGDATA set: from the postgres container's
# /docker-entrypoint-initdb.d/ on a fresh install, or by hand. An existing server.crt/server.key
# in PGDATA (an upgrade) is kept as it is. A fresh install gets a private CA (ca.crt, ca.key) and
# a server certificate signed by it, valid for every name in POSTGRES_SSL_HOSTNAMES, so clients
# can use sslmode=verify-full with sslrootcert=ca.crt.
#
# Environment:
#   PGDATA                  the data directory (required)
#   POSTGRES_SSL_HOSTNAMES  comma-separated DNS names and IPs the certificate is valid for
#                           (default: watchgrid-postgres,postgres,localhost,127.0.0.1)
#   POSTGRES_SSL_DAYS       validity in days (default: 825)
#   POSTGRES_SSL_CA_EXPORT  if set, ca.crt is also copied there for the server's DATABASE_URL
#   POSTGRES_SSL_REQUIRE    if 1, pg_hba.conf is rewritten so TCP clients must use TLS
set -euo pipefail

: "${PGDATA:?PGDATA must point at the PostgreSQL data directory}"
hosts=${POSTGRES_SSL_HOSTNAMES:-watchgrid-postgres,postgres,localhost,127.0.0.1}
days=${POSTGRES_SSL_DAYS:-825}
cd "$PGDATA"
umask 077

if [ -s server.crt ] && [ -s server.key ]; then
  echo "postgres-ssl-init: keeping the existing certificate in $PGDATA"
else
  san=""
  for host in ${hosts//,/ }; do
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then entry="IP:$host"; else entry="DNS:$host"; fi
    san=${san:+$san,}$entry
  done
  first=${hosts%%,*}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.crt -days "$days" -subj "/CN=Watchgrid PostgreSQL CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server.key -out server.csr -subj "/CN=$first" 2>/dev/null
  extensions=$(mktemp)
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' \
    "$san" > "$extensions"
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out server.crt -days "$days" -extfile "$extensions" 2>/dev/null
  rm -f server.csr ca.srl "$extensions"
  chmod 600 server.key ca.key
  chmod 644 server.crt ca.crt
  echo "postgres-ssl-init: created a CA and a server certificate for $san"
fi

if ! grep -q '^# watchgrid: TLS' postgresql.conf; then
  cat >> postgresql.conf <<'CONF'

# watchgrid: TLS (scripts/postgres-ssl-init.sh)
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
CONF
fi

if [ "${POSTGRES_SSL_REQUIRE:-0}" = 1 ] && ! grep -q '^# watchgrid: TLS required' pg_hba.conf; then
  sed -i -E 's/^host([[:space:]])/hostssl\1/' pg_hba.conf
  printf '# watchgrid: TLS required\nhostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n' >> pg_hba.conf
fi

if [ -n "${POSTGRES_SSL_CA_EXPORT:-}" ] && [ -s ca.crt ]; then
  cp ca.crt "$POSTGRES_SSL_CA_EXPORT"
  chmod 644 "$POSTGRES_SSL_CA_EXPORT"
fi
echo "postgres-ssl-init: TLS is on; clients can verify with sslmode=verify-full&sslrootcert=<ca.crt>"
