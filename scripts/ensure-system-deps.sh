#!/usr/bin/env sh
# The one system library onnet needs beyond Python: libsodium (>= 1.0.18) for private
# mode's ristretto255 group, loaded by pysodium. Installed with apt when missing and allowed.
set -eu
if ldconfig -p 2>/dev/null | grep -q 'libsodium\.so'; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing libsodium (Debian package libsodium23)" >&2
    apt-get update -qq && apt-get install -y -qq libsodium23 >/dev/null
    exit 0
fi
echo "onnet needs libsodium >= 1.0.18: install it (Debian/Ubuntu: apt-get install libsodium23;" \
     "macOS: brew install libsodium), then run make again" >&2
exit 1
