#!/bin/sh
# The official redis image's entrypoint, as far as the chart relies on it: arguments
# that start with an option (the chart's `args: [--requirepass, ...]`) or name a
# .conf file are redis-server's; anything else is a command to run.
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
exec "$@"
