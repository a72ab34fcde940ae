#!/bin/sh
# The official MinIO image's entrypoint, as far as the chart relies on it: arguments
# that do not start with `minio` (the chart's `args: [server, /data, ...]`) are
# minio's.
set -e
if [ "$1" != "minio" ] && [ -n "$1" ]; then
  set -- minio "$@"
fi
exec "$@"
