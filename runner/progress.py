"""Progress from 0 to 1 that means something.

Milestones of every job, and within the running phase what the command itself
says: a percentage it prints, or "step k/n" of a `run` pipeline.
"""

from __future__ import annotations

import re

QUEUED = 0.0
INPUTS_FETCHED = 0.1
RUNNING = 0.15
COMMAND_DONE = 0.9
OUTPUTS_STORED = 0.95
DONE = 1.0

_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?%")
_STEP = re.compile(r"\bstep (\d+)\s*/\s*(\d+)\b", re.IGNORECASE)
_STAGE = re.compile(r"\bStage (\d+)\s*/\s*(\d+)\b")


def command_fraction(line: str) -> float | None:
    """How far the command says it is (0..1), if this line says so."""
    for pattern in (_STEP, _STAGE):
        match = pattern.search(line)
        if match:
            k, n = int(match.group(1)), int(match.group(2))
            if 0 < k <= n:
                # "step k/n: ..." is printed as step k starts.
                return (k - 1) / n
    match = _PERCENT.search(line)
    if match:
        value = float(match.group(1))
        if 0 <= value <= 100:
            return value / 100
    return None


def overall(fraction: float) -> float:
    """A command's own fraction mapped into the running phase."""
    return round(RUNNING + (COMMAND_DONE - RUNNING) * min(max(fraction, 0.0), 1.0), 4)
