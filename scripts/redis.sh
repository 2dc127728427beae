#!/usr/bin/env bash
# Start the local Redis the tests use, unless one already answers on 127.0.0.1:6379.
if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then exit 0; fi
if ! command -v redis-server >/dev/null; then
  echo "redis-server is not installed; Redis tests will be skipped" >&2; exit 0
fi
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && exit 0; sleep 0.1; done
echo "Redis did not start" >&2; exit 1
