"""The reliability suite: counts the generated bad-input cases and prints the total.

The hypothesis tests here use their own settings (a fixed number of examples,
``derandomize=True``, no deadline, no example database), so runs repeat exactly.
"""

from __future__ import annotations

from typing import Any

import _harness


def pytest_terminal_summary(terminalreporter: Any) -> None:
    total = sum(_harness.CASES.values())
    if not total:
        return
    tr = terminalreporter
    tr.section("reliability: generated bad-input cases")
    for kind, label in _harness.KINDS.items():
        if _harness.CASES[kind]:
            tr.write_line(f"  {_harness.CASES[kind]:5d}  {label}")
    tr.write_line(f"  {total:5d}  generated bad-input cases tried in all; "
                  f"{len(_harness.UNEXPECTED)} unexpected outcomes")
    for line in _harness.UNEXPECTED[:20]:
        tr.write_line(f"         unexpected: {line}")
