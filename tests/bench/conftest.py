"""Benchmark-suite hooks: after the timings table, print each peer's median time as a ratio to fdbench's.

Within a pytest-benchmark group, the benchmark whose name contains "fdbench" is ours; every other one in
the group is a peer measured in the same run, so the ratios compare like with like on this machine.
"""

from __future__ import annotations

import platform
from collections import defaultdict

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = defaultdict(list)
    for bench in session.benchmarks:
        if bench.stats is not None:
            groups[bench.group or "(no group)"].append(bench)
    lines = []
    for group, members in sorted(groups.items()):
        ours = [b for b in members if "fdbench" in b.name]
        if not ours:
            continue
        reference = ours[0].stats.median
        for peer in members:
            if peer is ours[0]:
                continue
            lines.append(
                f"{group}: {peer.name} median {peer.stats.median:.4g} s vs {ours[0].name} "
                f"{reference:.4g} s -> fdbench is {peer.stats.median / reference:.1f}x faster"
            )
    if lines:
        terminalreporter.section(f"ratios against peers ({platform.processor() or platform.machine()})")
        for line in lines:
            terminalreporter.write_line(line)
