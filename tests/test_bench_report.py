"""bench.suite's write-up: a run replaces the generated figures and keeps the notes below them."""

from __future__ import annotations

from pathlib import Path

from bench.suite_report import NOTES_MARK, write


def test_a_run_keeps_the_hand_written_notes(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    notes = f"{NOTES_MARK}\n\n## A round of work\n\nWhat was measured by hand.\n"
    out.write_text(f"# Benchmarks\n\nold figures\n\n{notes}")
    write(out, "# Benchmarks\n\nnew figures\n")
    assert out.read_text() == f"# Benchmarks\n\nnew figures\n\n{notes}"
    write(out, "# Benchmarks\n\nnewer figures\n")
    assert out.read_text() == f"# Benchmarks\n\nnewer figures\n\n{notes}"


def test_a_write_up_without_notes_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "results" / "benchmarks.md"
    write(out, "# Benchmarks\n\nfirst\n")
    write(out, "# Benchmarks\n\nsecond\n")
    assert out.read_text() == "# Benchmarks\n\nsecond\n"
