#!/usr/bin/env bash
# The Python the warehouse's tests and benchmark use: DuckDB (reads the Parquet files the
# way a user would) and moto's S3 server (the warehouse in a bucket). Installs them into
# .ci/venv from PyPI; does nothing when they are there already.
set -euo pipefail
cd "$(dirname "$0")"
# Pinned: a test's answer must not change with a release of a tool.
DUCKDB_VERSION=2.0.1
MOTO_VERSION=5.2.5
BOTO3_VERSION=1.44.8
if [ -x venv/bin/python ] && venv/bin/python -c "
import duckdb, moto, boto3, flask
assert duckdb.__version__ == '$DUCKDB_VERSION' and moto.__version__ == '$MOTO_VERSION'
" 2>/dev/null; then
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null && command -v apt-get >/dev/null; then
    (apt-get install -y python3-venv || (apt-get update && apt-get install -y python3-venv)) >/dev/null
fi
python3 -m venv venv
venv/bin/pip install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" "moto[server]==$MOTO_VERSION" "boto3==$BOTO3_VERSION"
venv/bin/python -c 'import duckdb, moto; print("duckdb", duckdb.__version__, "moto", moto.__version__)'
