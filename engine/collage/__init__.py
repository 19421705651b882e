"""Label collage: sCBN edits (paper §3.1) through the generator contract (``label``)."""
