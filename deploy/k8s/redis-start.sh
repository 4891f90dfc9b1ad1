#!/bin/sh
# Starts this pod's Redis: the primary the Sentinels name, else (the very first
# start, no Sentinel answering yet) redis-0. Every node announces its stable DNS
# name (redis-N.redis), so a failover survives pod IP changes.
set -eu
me="$(hostname).redis"
primary=""
for sentinel in redis-0.redis redis-1.redis redis-2.redis; do
    primary="$(timeout 2 redis-cli -h "$sentinel" -p 26379 sentinel get-master-addr-by-name shop 2>/dev/null | head -n 1 || true)"
    [ -n "$primary" ] && break
done
[ -n "$primary" ] || primary=redis-0.redis
set -- --dir /data --appendonly yes --maxmemory-policy noeviction \
    --replica-announce-ip "$me"
if [ "$primary" = "$me" ]; then
    exec redis-server "$@"
fi
exec redis-server "$@" --replicaof "$primary" 6379
