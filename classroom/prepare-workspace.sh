#!/bin/bash
# The student's working copy of the book, made once at the first start of their server
# (classroom/Dockerfile installs this as a before-notebook.d hook; TLJH users get it from the
# nbgitpuller link instead). The image's copy in /opt stays untouched: a student's edits and
# answers live in ~/splitting-folios only, and survive restarts on their persistent home.
set -eu
WORK="${HOME}/splitting-folios"
if [ ! -e "${WORK}" ]; then
    git clone --quiet /opt/splitting-folios "${WORK}"
    if [ -n "${BOOK_REPO:-}" ]; then
        # so that the launch link (nbgitpuller: git fetch origin + merge) updates this copy
        git -C "${WORK}" remote set-url origin "${BOOK_REPO}"
    fi
    echo "splitting-folios: made your working copy in ${WORK}"
fi
