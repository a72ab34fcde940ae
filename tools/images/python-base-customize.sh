#!/usr/bin/env bash
# mmdebstrap customize hook of the Python base image (tools/images/python_base.py):
# a CPython build of this machine copied in at /usr/local, laid out as the official
# python:3.11-slim image has it (python, python3, pip on PATH; no test suites, no
# static library, no _tkinter: a slim image has no Tk/X11 libraries either).
#
#   python-base-customize.sh <rootfs> <cpython prefix> <major.minor>
#
# The build was configured with --enable-shared and an rpath of its own prefix: at
# /usr/local its libpython is found through ld.so.cache (ldconfig below) instead.
# pip and setuptools come from the build's own ensurepip wheels (offline), not from
# its site-packages, which hold whatever this machine installed there.
set -euo pipefail

root=$1
prefix=$2
ver=$3
dest=$root/usr/local
py=python$ver

log() { printf '[python-base] %s\n' "$*" >&2; }

[[ -x $prefix/bin/$py ]] || { log "no $prefix/bin/$py"; exit 1; }

log "copying $prefix -> /usr/local"
tar -C "$prefix" -cf - \
  --exclude=test --exclude=tests --exclude=idle_test \
  --exclude='libpython*.a' --exclude='_tkinter.*.so' \
  --exclude="lib/$py/site-packages" \
  include lib share "bin/$py" "bin/$py-config" |
  tar -C "$dest" --no-same-owner -xf -

# Scripts of the build name its own interpreter: point them at /usr/local.
for script in "pydoc$ver" "idle$ver" "2to3-$ver"; do
  if [[ -f $prefix/bin/$script ]]; then
    sed "1s|^#!.*|#!/usr/local/bin/$py|" "$prefix/bin/$script" >"$dest/bin/$script"
    chmod 755 "$dest/bin/$script"
  fi
done
sed -i "s|$prefix|/usr/local|g" "$dest"/lib/pkgconfig/*.pc
# The official image's names: python3 and python, pydoc, idle, python-config.
ln -sfn "$py" "$dest/bin/python3"
ln -sfn python3 "$dest/bin/python"
ln -sfn "$py-config" "$dest/bin/python3-config"
ln -sfn python3-config "$dest/bin/python-config"
ln -sfn "pydoc$ver" "$dest/bin/pydoc3"
ln -sfn pydoc3 "$dest/bin/pydoc"
ln -sfn "idle$ver" "$dest/bin/idle3"
ln -sfn idle3 "$dest/bin/idle"
ln -sfn "2to3-$ver" "$dest/bin/2to3"

chroot "$root" /sbin/ldconfig
# A clean environment: nothing of this machine's pip settings (find-links, cert).
in_root=(chroot "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8)
log "ensurepip (bundled wheels, offline)"
"${in_root[@]}" "$py" -m ensurepip --default-pip >&2
rm -rf "$root/root/.cache"
# Readable by any user (the images run as uid 10001), writable by root only.
chmod -R a+rX,go-w "$dest"

# Every library the interpreter and its extension modules link against is there.
missing=$("${in_root[@]}" sh -c \
  'find /usr/local -type f \( -name "*.so" -o -name "*.so.*" -o -perm -u+x \) -exec ldd {} + 2>/dev/null' |
  grep 'not found' || true)
if [[ -n $missing ]]; then
  log "libraries missing from the root filesystem:"
  printf '%s\n' "$missing" | sort -u >&2
  exit 1
fi
"${in_root[@]}" python -c '
import bz2, ctypes, curses, dbm, decimal, hashlib, lzma, readline, sqlite3, ssl, sys, uuid, zlib
import venv, ensurepip
print(sys.version.split()[0], sys.prefix, ssl.OPENSSL_VERSION)' >&2
"${in_root[@]}" pip --version >&2
