#!/bin/sh
# The install steps of the container image, shared by the Dockerfile and by
# tests/chart/test_image.py (which runs them in a clean venv, since no Docker
# engine runs on the CI machines). uv is pinned by the caller.
#
#   docker-install.sh build SRC DIST       the wheel and the locked runtime requirements
#   docker-install.sh install DIST PREFIX  a venv at PREFIX: the locked requirements
#                                          (hash-checked) and the wheel, nothing else
#
# Environment: UV (default: uv), PYTHON (the interpreter of the venv; default: python3).
set -eu
uv=${UV:-uv}
python=${PYTHON:-python3}

case "${1:-}" in
  build)
    src=$2 dist=$3
    "$uv" build --wheel --out-dir "$dist" "$src"
    "$uv" export --project "$src" --frozen --no-dev --no-emit-project --no-header \
      --format requirements-txt --output-file "$dist/requirements.txt" >/dev/null
    ;;
  install)
    dist=$2 prefix=$3
    "$uv" venv --python "$python" "$prefix"
    "$uv" pip install --python "$prefix/bin/python" --compile-bytecode --require-hashes \
      --no-deps --requirement "$dist/requirements.txt"
    "$uv" pip install --python "$prefix/bin/python" --compile-bytecode --no-deps "$dist"/prewarm-*.whl
    "$prefix/bin/prewarm" --version
    ;;
  *)
    echo "usage: $0 build SRC DIST | install DIST PREFIX" >&2
    exit 2
    ;;
esac
