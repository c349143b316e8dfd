#!/bin/sh
# `rerund` as `python3 -m rerund`: the package on PYTHONPATH, not the installed script's.
exec "${PYTHON:-python3}" -m rerund "$@"
