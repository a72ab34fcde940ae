"""Small inputs the e2e tests make (no data is fetched)."""

from __future__ import annotations

import io

import numpy as np


def small_field() -> bytes:
    """A 24 x 48 .npy, as numpy.save writes it."""
    buffer = io.BytesIO()
    np.save(buffer, np.arange(24 * 48, dtype=float).reshape(24, 48))
    return buffer.getvalue()
