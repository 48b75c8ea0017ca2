"""The load tester is a package of its own that users run: `python -m switchboard_load` and the
installed `switchboard-load` script both start it, and it depends on nothing in bench/ (the
benchmarks use the tester, never the other way round)."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "switchboard_load"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, absolute or relative."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                found.add("switchboard_load" + (f".{node.module}" if node.module else ""))
            elif node.module:
                found.add(node.module)
    return found


def test_imported_modules_sees_nested_and_relative_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from bench.servers import x\n    import bench\nfrom . import y\n")
    assert imported_modules(f) == {"bench.servers", "bench", "switchboard_load"}


def test_the_load_tester_imports_nothing_from_bench() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10  # the walk found the package
    offending = {
        f"{path.name}: {name}"
        for path in modules
        for name in imported_modules(path)
        if name == "bench" or name.startswith("bench.")
    }
    assert not offending


def test_no_file_of_the_load_tester_passes_400_lines() -> None:
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def _script() -> Path:
    return Path(sysconfig.get_path("scripts")) / "switchboard-load"


@pytest.mark.parametrize(
    "command",
    [[sys.executable, "-m", "switchboard_load"], [str(_script())]],
    ids=["python -m switchboard_load", "switchboard-load"],
)
def test_both_entry_points_run_the_tester(command: list[str], tmp_path: Path) -> None:
    # From another directory: the installed package is what runs, not the checkout's cwd.
    shown = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: switchboard-load")
    for scenario in ("hold", "fanout", "echo", "churn"):
        assert scenario in shown.stdout
    # The parameter checks run too: a remote target is refused before anything connects.
    refused = subprocess.run(
        [*command, "fanout", "--url", "ws://192.0.2.1:8000/ws"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("switchboard-load: ")
    assert "loopback" in refused.stderr
