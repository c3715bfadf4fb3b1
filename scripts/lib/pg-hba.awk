# pg_hba.conf as scripts/setup.sh wants it: our access block first, every `trust` line gone.
#
#   awk -f scripts/lib/pg-hba.awk /etc/postgresql/15/main/pg_hba.conf > new
#
# Idempotent: the block of an earlier run and the "containers" lines of older set-ups are
# replaced, not repeated; every other line (comments, a site's own rules) is kept in place,
# after ours (the first matching line wins in pg_hba.conf). Why no trust anywhere: a trust
# line makes every local user PostgreSQL's superuser (`psql -h 127.0.0.1 -U postgres`).
BEGIN {
  print "# odooops: access v3 (scripts/setup.sh): peer on the socket, SCRAM passwords over TCP"
  print "local   all             postgres                                peer"
  print "local   all             all                                     peer"
  print "host    all             all             127.0.0.1/32            scram-sha-256"
  print "host    all             all             ::1/128                 scram-sha-256"
  print "# Docker bridges (containers reach the host as host-gateway), each role by its password"
  print "host    all             all             172.16.0.0/12           scram-sha-256"
  print "host    all             all             192.168.0.0/16          scram-sha-256"
  print "# odooops: end of access v3"
}
/^# odooops: access v3/ { skipping = 1; next }
skipping { if (/^# odooops: end of access v3/) skipping = 0; next }
/^# odooops: containers/ { old_block = 1; next }
old_block && $1 == "host" && $2 == "all" && $3 == "all" && $4 ~ /^(172\.|192\.168\.)/ { next }
{ old_block = 0 }
/^[[:space:]]*#/ || NF == 0 { print; next }
{ for (i = 1; i <= NF; i++) if ($i == "trust") next }
{ print }
