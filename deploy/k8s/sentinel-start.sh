#!/bin/sh
# Starts this pod's Sentinel, watching the primary the other Sentinels name
# (redis-0 at the very first start). Quorum 2 of 3. Sentinel rewrites its own
# configuration file, so it is written afresh into a writable volume.
set -eu
me="$(hostname).redis"
primary=""
for sentinel in redis-0.redis redis-1.redis redis-2.redis; do
    [ "$sentinel" = "$me" ] && continue
    primary="$(timeout 2 redis-cli -h "$sentinel" -p 26379 sentinel get-master-addr-by-name shop 2>/dev/null | head -n 1 || true)"
    [ -n "$primary" ] && break
done
[ -n "$primary" ] || primary=redis-0.redis
cat >/sentinel/sentinel.conf <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
sentinel monitor shop $primary 6379 2
sentinel down-after-milliseconds shop 5000
sentinel failover-timeout shop 30000
sentinel parallel-syncs shop 1
CONF
exec redis-server /sentinel/sentinel.conf --sentinel
