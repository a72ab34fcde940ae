"""The one line of a failed command's stderr that says why it failed.

A command's last line is often not that line: Zyra's bad-colormap error is followed by
matplotlib's hint about other colormaps, and a warning or a clean-up message may come
after the error. So the last line that reads as an error wins, and the last line only
when none does.
"""

from __future__ import annotations

import re

MAX_CHARS = 500

# `ERROR: …` / `ERROR:root:…` (Zyra's and logging's), `ValueError: …` (a traceback's end),
# `zyra visualize heatmap: error: …` (argparse).
_ERROR = re.compile(
    r"^\s*(?:(?:ERROR|CRITICAL|FATAL)\b|(?:[A-Za-z_][\w.]*)?(?:Error|Exception):|error:)"
    r"|: error: "
)


def error_line(stderr: str) -> str:
    """The last line that reads as an error, else the last non-blank line, else ""."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    chosen = next((line for line in reversed(lines) if _ERROR.search(line)), None)
    return (chosen or (lines[-1] if lines else ""))[:MAX_CHARS]
