#!/usr/bin/env bash
# One block of a page, run as if typed into the reader's terminal (test_guides.py):
# the shell variables earlier blocks set are there, and the ones this block sets are
# kept for the next: non-exported ones in STATE, the environment in OUT/env.
# Usage: bash -euo pipefail reader_shell.sh BLOCK STATE OUT
set -euo pipefail
__docs_block=$1 __docs_state=$2 __docs_out=$3
shift 3
__docs_initial=$(compgen -v) # bash's own variables and the environment's

__docs_keep() {
  local __docs_name __docs_names=()
  for __docs_name in $(compgen -v); do
    case $__docs_name in __docs_* | BASH_* | FUNCNAME | PIPESTATUS | COLUMNS | LINES) continue ;; esac
    grep -qxF "$__docs_name" <<<"$__docs_initial" && continue
    compgen -e | grep -qxF "$__docs_name" && continue # exported: it travels in env
    __docs_names+=("$__docs_name")
  done
  if ((${#__docs_names[@]})); then
    declare -p "${__docs_names[@]}" >"$__docs_state"
  else
    : >"$__docs_state"
  fi
  env -0 >"$__docs_out/env"
  printf '%s' "$PWD" >"$__docs_out/pwd"
}
trap __docs_keep EXIT

if [[ -f $__docs_state ]]; then
  # shellcheck disable=SC1090  # written by the previous block's __docs_keep
  . "$__docs_state"
fi
# shellcheck disable=SC1090  # the block
. "$__docs_block"
