#!/usr/bin/env bash
# Count FLOPs of every model with thop and print config/model_map.json's contents.
# ./flop_count.sh --write  also rewrites config/model_map.json; ./flop_count.sh --help for more.
exec python3 "$(dirname "$0")/util/flop_count.py" "$@"
