"""The projections of the last few regions, by key (image, layer, region, model; the plug-in sends it), so that the
edits that follow a projection (Project Selection, then Label Swap on the same selection) skip it."""
from __future__ import annotations

from collections import OrderedDict

from engine.project.projector import ProjectionResult


class ProjectionCache:
    """Projections by key (image, layer, region, model), so the edits that follow a projection are quick."""

    def __init__(self, size: int = 16):
        self.size = size
        self._d: OrderedDict[str, ProjectionResult] = OrderedDict()

    def get(self, key: str | None):
        if key is None or key not in self._d:
            return None
        self._d.move_to_end(key)
        return self._d[key]

    def put(self, key: str | None, value: ProjectionResult) -> None:
        if key is None:
            return
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)
