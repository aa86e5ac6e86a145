"""book/instructor.md shows real output: every console block with output is run again here
and must print exactly what the page shows (so a change to the exercises or the CLI that
would make the page wrong fails a test)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "book" / "instructor.md"
BLOCK = re.compile(r"```console\n\$ (?P<cmd>[^\n]*)\n(?P<out>.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m["cmd"], m["out"]) for m in BLOCK.finditer(PAGE.read_text())]


def test_the_page_has_runnable_examples() -> None:
    cmds = [c for c, out in blocks() if out.strip()]
    assert len(cmds) >= 4 and all("pyfolio.exercises" in c for c in cmds)


@pytest.mark.parametrize("cmd,out", [b for b in blocks() if b[1].strip()],
                         ids=lambda x: x[:60] if isinstance(x, str) and "\n" not in x else "")
def test_console_block_output_is_what_the_command_prints(
        cmd: str, out: str, capsys: pytest.CaptureFixture[str]) -> None:
    if cmd.startswith("python -m pyfolio.exercises "):  # in-process: the same main()
        from pyfolio.exercises.__main__ import main

        assert main(shlex.split(cmd)[3:]) == 0
        got = capsys.readouterr().out
    elif cmd.startswith("python -c "):  # in-process too
        exec(shlex.split(cmd)[2], {})
        got = capsys.readouterr().out
    else:  # a shell line: run it with this interpreter's directory first on PATH
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        got = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True,
                             env=dict(os.environ, PATH=path), cwd=PAGE.parents[1],
                             timeout=120).stdout
    assert got.rstrip("\n") == out.rstrip("\n")
