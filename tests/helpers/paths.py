"""Where things are in the checkout: its root (for child processes' cwd and PYTHONPATH) and this folder."""

from __future__ import annotations

from pathlib import Path

HELPERS = Path(__file__).resolve().parent
REPO = HELPERS.parents[1]
