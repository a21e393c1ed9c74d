#!/usr/bin/env bash
# The inference sweep (docs/protocol.md, section 5): ./run_inference.sh results.csv [--quick] [--help for all flags]
exec python3 "$(dirname "$0")/util/run_inference.py" "$@"
