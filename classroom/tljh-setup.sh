#!/bin/bash
# The Littlest JupyterHub (one machine, up to ~100 students) for the book, after TLJH's own
# installer has run. On the server, from a clone of the repository:
#   sudo BOOK_REPO=https://git.example.org/you/splitting-folios bash classroom/tljh-setup.sh
# It installs the project into TLJH's user environment (every student's server uses it), sets
# the per-student limits measured by `make bench-classroom` (see book/instructor.md) and opens
# JupyterLab by default. Students then follow the nbgitpuller link of a chapter
# (classroom/nbgitpuller_link.py): it clones the book into their ~/splitting-folios.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "run it with sudo" >&2; exit 1; fi
command -v tljh-config >/dev/null || { echo "tljh-config not found: install TLJH first" >&2; exit 1; }
: "${BOOK_REPO:?set BOOK_REPO to the git repository of the book}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USER_PIP=/opt/tljh/user/bin/pip
USER_PY=/opt/tljh/user/bin/python

# the project (from this clone) with its classroom extra, and nbgitpuller
"${USER_PIP}" install --quiet "${HERE}[classroom]" nbgitpuller
"${USER_PY}" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3"

# per student: memory limit and CPU limit (book/instructor.md explains the figures)
tljh-config set limits.memory "${MEMORY_LIMIT:-1G}"
tljh-config set limits.cpu "${CPU_LIMIT:-1}"
tljh-config set user_environment.default_app jupyterlab
# stop servers idle for an hour (TLJH's idle culler): their memory goes back to the class
tljh-config set services.cull.timeout 3600
# the service whose token `python -m pyfolio.exercises deliver/collect` uses (TLJH reads extra
# JupyterHub configuration from jupyterhub_config.d); the token stays readable by root only
CONF=/opt/tljh/config/jupyterhub_config.d/splitting-folios.py
TOKEN_FILE=/opt/tljh/config/classroom-admin.token
[ -s "${TOKEN_FILE}" ] || (umask 077; openssl rand -hex 32 > "${TOKEN_FILE}")
mkdir -p "$(dirname "${CONF}")"
cat > "${CONF}" <<PY
c.JupyterHub.services = [{"name": "classroom-admin", "api_token": open("${TOKEN_FILE}").read().strip()}]
c.JupyterHub.load_roles = [{"name": "classroom-admin", "services": ["classroom-admin"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"]}]
PY
tljh-config reload
echo "The API token for deliver/collect is in ${TOKEN_FILE}."
echo "TLJH is set up for Splitting Folios. Chapter links:"
"${USER_PY}" "${HERE}/classroom/nbgitpuller_link.py" --hub "${HUB_URL:-http://$(hostname -f)}" \
    --repo "${BOOK_REPO}" chapters/07-pmd-to-ptes.md
