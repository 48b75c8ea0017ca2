"""server/static/switchboard.d.ts describes server/static/switchboard.js exactly; an example page
type-checks against it with `tsc --noEmit` (TypeScript pinned in tools/ts, from npm).

`make test` installs TypeScript first (`npm ci --prefix tools/ts`); run alone, the fixture
does the same when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools" / "ts"
TSC = TOOLS / "node_modules" / ".bin" / "tsc"
EXAMPLE = ROOT / "tests" / "ts" / "example.ts"
DTS = ROOT / "server" / "static" / "switchboard.d.ts"
EXPECT_ERROR = "// @ts-expect-error"


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tsc() -> Path:
    if not TSC.exists():
        npm = shutil.which("npm")
        assert npm, "npm not found: install Node.js 20 (TypeScript comes from npm)"
        done = run(npm, "ci", "--no-audit", "--no-fund", cwd=TOOLS)
        assert done.returncode == 0, done.stderr
    return TSC


def test_the_example_page_type_checks(tsc: Path) -> None:
    """Imported by its package name: package.json's exports and types are used as npm would."""
    done = run(tsc, "-p", ROOT / "tests" / "ts" / "tsconfig.json")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_types_refuse_each_misuse(tsc: Path, tmp_path: Path) -> None:
    """Without its `@ts-expect-error` lines the example fails exactly on those lines.

    The copy lives in a project of its own that installed the package (a symlink in
    node_modules), as a user's would."""
    lines = EXAMPLE.read_text().splitlines()
    expected = {i + 2 for i, line in enumerate(lines) if line.strip().startswith(EXPECT_ERROR)}
    assert len(expected) >= 7
    kept = [line for line in lines if not line.strip().startswith(EXPECT_ERROR)]
    # Line numbers shift by one per removed directive above them.
    shifted = {n - 1 - sum(1 for e in expected if e < n) for n in expected}
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "switchboard-client").symlink_to(ROOT)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "example.ts").write_text("\n".join(kept) + "\n")
    config = json.loads((ROOT / "tests" / "ts" / "tsconfig.json").read_text())
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    done = run(tsc, "-p", tmp_path / "tsconfig.json", cwd=tmp_path)
    assert done.returncode != 0
    failing = {int(m) for m in re.findall(r"^example\.ts\((\d+),\d+\)", done.stdout, re.M)}
    assert failing == shifted, done.stdout


def dts_class_members(name: str) -> set[str]:
    text = DTS.read_text()
    body = re.search(rf"export declare class {name}\b[^{{]*\{{(.*?)\n\}}", text, re.S)
    assert body, f"class {name} not declared"
    return set(re.findall(r"^  (?:readonly )?(\w+)[(<?:]", body.group(1), re.M)) - {"constructor"}


def test_the_declarations_match_the_module() -> None:
    """Every value the module exports is declared, and every public method of Switchboard."""
    script = (
        "const m = await import('./server/static/switchboard.js');"
        "const sb = new m.Switchboard('/ws');"
        "const methods = Object.getOwnPropertyNames(m.Switchboard.prototype);"
        "const fields = Object.keys(sb);"
        "console.log(JSON.stringify({exports: Object.keys(m), methods, fields}));"
    )
    node = shutil.which("node")
    assert node, "node not found: install Node.js 20"
    done = run(node, "--input-type=module", "-e", script)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    declared = set(
        re.findall(r"^export declare (?:class|function|const) (\w+)", DTS.read_text(), re.M)
    )
    assert declared == set(found["exports"])
    public = {n for n in found["methods"] + found["fields"] if not n.startswith("_")}
    assert dts_class_members("Switchboard") == public - {"constructor"}


def test_the_package_holds_the_module_and_its_types() -> None:
    npm = shutil.which("npm")
    assert npm, "npm not found: install Node.js 20"
    done = run(npm, "pack", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    (pack,) = json.loads(done.stdout)
    files = {f["path"] for f in pack["files"]}
    module = {
        "package.json",
        "server/static/switchboard.js",
        "server/static/switchboard.d.ts",
        "server/static/transports.js",
        "server/static/msgpack.js",
    }
    assert module <= files
    assert files <= module | {"README.md", "LICENSE"}
    manifest = json.loads((ROOT / "package.json").read_text())
    assert manifest["type"] == "module" and manifest["types"] == "./server/static/switchboard.d.ts"
