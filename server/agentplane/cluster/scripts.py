"""The cluster's Lua scripts, read from the package (one ``.lua`` file each)."""

from __future__ import annotations

import importlib.resources


def lua(name: str) -> str:
    """The source of ``<name>.lua`` in this package."""
    return importlib.resources.files("agentplane.cluster").joinpath(f"{name}.lua").read_text()
