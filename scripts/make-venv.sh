# Sourced by the scripts that make the Python environments under .venvs/.
#
# make_venv PYTHON NAME IMPORT_CHECK PACKAGE...
#   Creates .venvs/NAME with the interpreter PYTHON and installs PACKAGE..., unless an
#   environment in which IMPORT_CHECK runs is there already. One creator at a time (tests
#   may run these scripts concurrently); the lock is released before returning, so a
#   script may call another that takes it too.
make_venv() {
    local interpreter=$1 name=$2 check=$3
    shift 3
    local dir=.venvs/$name
    mkdir -p .venvs
    (
        flock 9
        if [[ -x $dir/bin/python ]] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
            exit 0
        fi
        rm -rf "$dir"
        "$interpreter" -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
        "$dir/bin/python" -c "$check"
    ) 9>.venvs/.venvs.lock
}
