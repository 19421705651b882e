"""Manifold projection of real photos (paper §4, App. B): the projector (``projector``) and the cache of recent
projections that lets the edits after a projection skip it (``cache``)."""
