"""`python -m engine.cli ...`: the same as the `neural-collage` console script (the GIMP plug-in starts the engine
with `python -m engine.cli serve`)."""
import sys

from engine.cli.parser import main

sys.exit(main())
