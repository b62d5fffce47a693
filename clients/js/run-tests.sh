#!/usr/bin/env bash
# The JavaScript client's checks: install from the lockfile, the Node tests against a real
# hub (TIDINGS_PYTHON: a python with tidings installed, default python3), the types.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node --test test/*.test.js
npx tsc --noEmit -p .
