"""One photo edit along the data path: crop (``crops``) -> project (engine/project) -> collage (engine/collage) |
blend (engine/blend) -> compose (engine/compose), run by ``pipeline.PhotoEditor``."""
