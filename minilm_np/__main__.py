"""``python -m minilm_np``: the same command line as ``minilm-np``."""
import sys

from .cli import run

sys.exit(run())
