#!/usr/bin/env sh
# What onnet needs from the system beyond Python, installed with apt when missing and allowed:
# - libsodium (>= 1.0.18) for private mode's ristretto255 group, loaded by pysodium;
# - a C compiler and Python's headers, to compile the index's hot loops (Cython) at install;
# - OpenSSL's libcrypto headers (3.0 or newer), which a lookup job calls for its fingerprints;
# - Node.js and npm, for the second client (examples/node) that the test suite runs;
# - valgrind, whose memcheck the test suite runs over the compiled loops.
set -eu
PYTHON="${PYTHON:-python3}"
missing=""
if ! ldconfig -p 2>/dev/null | grep -q 'libsodium\.so'; then
    missing="$missing libsodium23"
fi
if ! command -v cc >/dev/null 2>&1; then
    missing="$missing gcc libc6-dev"
fi
if ! printf '#include <openssl/evp.h>\n' | cc -E - >/dev/null 2>&1; then
    missing="$missing libssl-dev"
fi
if ! command -v node >/dev/null 2>&1; then
    missing="$missing nodejs"
fi
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing npm"
fi
if ! command -v valgrind >/dev/null 2>&1; then
    missing="$missing valgrind"
fi
include_dir=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if [ ! -f "$include_dir/Python.h" ]; then
    missing="$missing python3-dev"
fi
if [ -z "$missing" ]; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing:$missing" >&2
    # shellcheck disable=SC2086  # one word per package
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null
    exit 0
fi
echo "onnet needs:$missing (Debian/Ubuntu package names). Install them" \
     "(macOS: brew install libsodium openssl@3 node; xcode-select --install), then run make again" >&2
exit 1
