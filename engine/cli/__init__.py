"""The side entrance: the `neural-collage` command line (``parser``: arguments and ``main``; ``commands``; ``files``:
photos and masks; ``serve``: the engine server and its keys; ``demo``)."""
