"""The bridge's end in the engine: the ZeroMQ server (``server``) and the handler that runs its ops (``handler``)."""
