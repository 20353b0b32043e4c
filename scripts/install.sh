#!/usr/bin/env bash
# Idempotent set-up of everything dbmesh's build, tests, benchmarks and demo need:
#   1. OS packages (one `apt-get update`, one `apt-get install`, only when something is missing);
#   2. the project venv .venv with `pip install -e '.[test]'` (compiles the Cython wire layer);
#   3. Node test dependencies for tests/clients/node, when that suite exists.
# Safe to run again: each step is skipped when its inputs have not changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[install] %s\n' "$*" >&2; }

# -- 1. OS packages --------------------------------------------------------------------------------
PACKAGES=(mariadb-server mariadb-client postgresql postgresql-client zookeeper sysbench pgbouncer
          libmariadb-dev pkg-config build-essential nodejs npm)

# A package also counts as present when the command it provides is already on the machine from
# elsewhere: Node from NodeSource ships npm inside its nodejs package, and Debian's npm package
# would conflict with it; postgresql-client is a metapackage over postgresql-client-NN.
provides_cmd() {
  case "$1" in
    nodejs) echo node ;;
    npm) echo npm ;;
    postgresql-client) echo psql ;;
    mariadb-client) echo mariadb ;;
    *) echo "" ;;
  esac
}

is_installed() {
  if dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; then
    return 0
  fi
  local cmd
  cmd=$(provides_cmd "$1")
  [[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  log "installing OS packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
  log "OS packages: all present"
fi

# -- 2. Python venv ----------------------------------------------------------------------------------
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  for candidate in python3.13 python3.12 python3.11 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate
      break
    fi
  done
fi

if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
  log "removing a broken .venv (its interpreter no longer runs)"
  rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $PYTHON ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv .venv
fi

# Re-install when the packaging files change or the package no longer imports; otherwise skip
# (`make build` recompiles changed .pyx files in place).
stamp=.venv/.dbmesh-install-stamp
want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]] || ! .venv/bin/python -c 'import dbmesh, pytest' >/dev/null 2>&1; then
  log "pip install -e '.[test]' (compiles the Cython extension)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  # Cython/setuptools in the venv too, so `make build` can run build_ext --inplace without isolation.
  .venv/bin/python -m pip install -q --disable-pip-version-check "setuptools>=68" wheel "Cython>=3.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" >"$stamp"
else
  log "venv: up to date"
fi

# -- 3. Node client tests -------------------------------------------------------------------------
NODE_DIR=tests/clients/node
if [[ -f $NODE_DIR/package.json ]]; then
  node_stamp=$NODE_DIR/node_modules/.dbmesh-install-stamp
  node_want=$(cat "$NODE_DIR"/package.json "$NODE_DIR"/package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [[ ! -f $node_stamp || "$(cat "$node_stamp")" != "$node_want" ]]; then
    log "npm install in $NODE_DIR"
    if [[ -f $NODE_DIR/package-lock.json ]]; then
      (cd "$NODE_DIR" && npm ci --no-audit --no-fund)
    else
      (cd "$NODE_DIR" && npm install --no-audit --no-fund)
    fi
    echo "$node_want" >"$node_stamp"
  else
    log "node modules: up to date"
  fi
fi
log "done"
