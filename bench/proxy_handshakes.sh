#!/usr/bin/env bash
# Full mTLS handshakes only (the first rows of issue 5's benchmark), kept for
# its old name: bench/proxy_compare.sh does the measuring, including the
# openssl s_time cross-check this script used to be.
# Usage: bench/proxy_handshakes.sh [BUILD_DIR] [SECONDS]
ROWS=${ROWS:-hs hs12 stime} exec bash "$(dirname "$0")/proxy_compare.sh" "$@"
