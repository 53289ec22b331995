"""Labelling projects: a person labels what dalkit asks for, in a CSV or on a web page (`dalkit project`).

`Project`, `ProjectSettings` and `Round` are imported on first use, so `dalkit --help` does not load torch.
"""

from __future__ import annotations

__all__ = ["Project", "ProjectSettings", "Round"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from dalkit.project import project

        return getattr(project, name)
    raise AttributeError(f"module 'dalkit.project' has no attribute {name!r}")
