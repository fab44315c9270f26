#!/usr/bin/env bash
# Builds the harness binaries into bench/bin/ (ignored by git): the load
# generator and the go-smtp peer from this module, and smtpd from the
# repository around it, so that a comparison measures the code checked out.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="/usr/local/go/bin:$PATH"
mkdir -p "$here/bin"
(cd "$here" && go vet ./... && go build -o bin/smtpload ./smtpload && go build -o bin/gosmtp-maildir ./peers/gosmtp-maildir)
(cd "$here/.." && go build -o "$here/bin/smtpd" ./cmd/smtpd)
echo "built: $here/bin/smtpload $here/bin/gosmtp-maildir $here/bin/smtpd" >&2
