"""``python -m minilm_np``: the same command line as ``minilm-np``."""
import sys

from .cli import main

sys.exit(main())
