"""Feature collage: spatial feature blending with the shift operator (paper §3.2) (``feature``)."""
