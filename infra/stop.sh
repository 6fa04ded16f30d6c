#!/usr/bin/env bash
# Kept for compatibility: same as infra/down.sh [kafka|cassandra|all] [--wipe]
exec "$(dirname "${BASH_SOURCE[0]}")/down.sh" "$@"
