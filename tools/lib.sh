# Shared shell functions of tools/test and tools/run (sourced, not executed).
# shellcheck shell=bash

LOGDIR="$REPO/.cache/logs"
mkdir -p "$LOGDIR"
HELPER_PIDS=()

step() { printf '\n=== %s ===\n' "$*"; }

ksef_spec_env() {
    export KSEF_SPEC_DIR="${KSEF_SPEC_DIR:-$REPO/../shared/ksef-spec}"
    if [ -z "${KSEF_SCHEMA_DIR:-}" ] && [ -d "$KSEF_SPEC_DIR/schemas" ]; then
        export KSEF_SCHEMA_DIR="$KSEF_SPEC_DIR/schemas"
    fi
}

ksef_find_odoo() {
    ODOO_SKIP_REASON=""
    if [ -z "${ODOO_SRC:-}" ]; then
        if [ -f /opt/odoo/odoo-bin ]; then
            ODOO_SRC=/opt/odoo
        else
            ODOO_SRC=""
            ODOO_SKIP_REASON="ODOO_SRC is unset and /opt/odoo/odoo-bin does not exist"
            return 0
        fi
    fi
    if [ ! -f "$ODOO_SRC/odoo-bin" ] || [ ! -d "$ODOO_SRC/odoo/addons/account" ]; then
        ODOO_SKIP_REASON="ODOO_SRC=$ODOO_SRC has no odoo-bin or odoo/addons/account"
        ODOO_SRC=""
        return 0
    fi
    if ! grep -q "version_info = (18, 0" "$ODOO_SRC/odoo/release.py" 2>/dev/null; then
        ODOO_SKIP_REASON="ODOO_SRC=$ODOO_SRC is not Odoo 18.0"
        ODOO_SRC=""
    fi
    return 0
}

# Creates/updates the virtualenv with the pinned libraries (the versions Odoo 18.0 pins for
# Python 3.11) and, when Odoo is present, Odoo's own requirements plus the Odoo test tools.
ksef_venv() {
    VENV="${KSEF_VENV:-$REPO/.venv}"
    local py="${PYTHON:-python3}"
    if [ ! -x "$VENV/bin/python" ]; then
        step "creating virtualenv $VENV"
        "$py" -m venv "$VENV"
    fi
    local cons="$REPO/.cache/pip-constraints.txt"
    : > "$cons"
    # cbor2 (an Odoo requirement) only builds with setuptools<70; PIP_CONSTRAINT replaces the
    # machine's own constraint file, so chain it.
    for f in /etc/xdg/pip/constraints.txt /etc/pip/constraints.txt; do
        [ -f "$f" ] && echo "-c $f" >> "$cons"
    done
    echo "setuptools<70" >> "$cons"
    local reqs=(-r "$REPO/requirements-dev.txt")
    local stamp_src="$REPO/requirements.txt $REPO/requirements-dev.txt"
    # requirements.txt pins the versions Odoo 18.0 pins for Python 3.11. Other Pythons (Odoo 18.0
    # supports 3.10-3.12) get other pins from Odoo's requirements.txt: keep only the names there,
    # Odoo's file (a constraint below) or pip chooses the versions.
    if [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != 3.11 ]; then
        sed -E 's/^([A-Za-z0-9_.-]+)==[^ ;#]*/\1/' "$REPO/requirements.txt" > "$REPO/.cache/requirements-anypy.txt"
        sed "s#^-r requirements.txt#-r $REPO/.cache/requirements-anypy.txt#" "$REPO/requirements-dev.txt" \
            > "$REPO/.cache/requirements-dev-anypy.txt"
        reqs=(-r "$REPO/.cache/requirements-dev-anypy.txt")
        stamp_src="$stamp_src $REPO/.cache/requirements-dev-anypy.txt"
    fi
    if [ -n "${ODOO_SRC:-}" ]; then
        reqs+=(-r "$ODOO_SRC/requirements.txt" -r "$REPO/requirements-odoo-dev.txt")
        stamp_src="$stamp_src $ODOO_SRC/requirements.txt $REPO/requirements-odoo-dev.txt"
    fi
    local stamp
    # shellcheck disable=SC2086
    stamp=$(cat $stamp_src | sha256sum | cut -c1-16)
    if [ "$(cat "$VENV/.ksef-stamp" 2>/dev/null)" != "$stamp" ]; then
        step "installing pinned requirements into $VENV"
        local odoo_cons=()
        [ -n "${ODOO_SRC:-}" ] && odoo_cons=(-c "$ODOO_SRC/requirements.txt")
        PIP_CONSTRAINT="$cons" "$VENV/bin/pip" install -q --disable-pip-version-check \
            "${reqs[@]}" "${odoo_cons[@]}"
        echo "$stamp" > "$VENV/.ksef-stamp"
    fi
    if [ -n "${ODOO_SRC:-}" ]; then
        local site
        site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        echo "$ODOO_SRC" > "$site/odoo-src.pth"
    fi
}

# The repository root is the addon, but Odoo finds addons by directory name: expose the
# checkout as <cache>/addons/l10n_pl_ksef.
ksef_addons_path() {
    local dir="$REPO/.cache/addons"
    mkdir -p "$dir"
    ADDON_LINK="$dir/l10n_pl_ksef"
    if [ "$(readlink "$ADDON_LINK" 2>/dev/null)" != "$REPO" ]; then
        rm -f "$ADDON_LINK"
        ln -s "$REPO" "$ADDON_LINK"
    fi
    ADDONS_PATH="$ODOO_SRC/odoo/addons,$dir"
}

ksef_postgres() {
    export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-odoo}"
    export PGPASSWORD="${PGPASSWORD:-odoo}"
    if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
        if command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
            local ver
            ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n1)
            [ -n "$ver" ] && pg_ctlcluster "$ver" main start || true
            for _ in $(seq 1 20); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 0.5; done
        fi
    fi
    if ! psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
            su postgres -c "psql -qc \"CREATE ROLE $PGUSER WITH LOGIN CREATEDB PASSWORD '$PGPASSWORD'\"" \
                >/dev/null 2>&1 || true
        fi
    fi
    psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -Atqc 'select 1' >/dev/null || {
        echo "cannot connect to PostgreSQL as $PGUSER@$PGHOST:$PGPORT (set PGHOST/PGUSER/PGPASSWORD)"
        exit 1
    }
}

# Writes an Odoo configuration file for database $1 and prints its path.
ksef_odoo_conf() {
    local db="$1" conf="$REPO/.cache/odoo-$1.conf"
    cat > "$conf" <<EOF
[options]
addons_path = $ADDONS_PATH
db_host = $PGHOST
db_port = $PGPORT
db_user = $PGUSER
db_password = $PGPASSWORD
db_name = $db
data_dir = $REPO/.cache/odoo-data
http_interface = 127.0.0.1
list_db = False
EOF
    echo "$conf"
}

ksef_stop_helpers() {
    local pid
    for pid in "${HELPER_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
}

# Third-party tools the core suite cross-checks against (xmlsec1 verifies our XAdES, zbarimg
# decodes our QR codes, rsvg-convert renders the SVG ones). Installed when possible, otherwise
# those tests skip with a reason.
ksef_system_tools() {
    local missing=()
    command -v xmlsec1 >/dev/null || missing+=(xmlsec1)
    command -v zbarimg >/dev/null || missing+=(zbar-tools)
    command -v rsvg-convert >/dev/null || missing+=(librsvg2-bin)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing cross-check tools: ${missing[*]}"
        (apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; }) ||
            echo "could not install ${missing[*]}: the cross-check tests will be skipped"
    else
        echo "missing ${missing[*]}: the cross-check tests will be skipped"
    fi
}
