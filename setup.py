"""The package build: setuptools as pyproject.toml configures it, plus the numba kernels compiled
for the build machine, and for a plain AVX2 machine where the build machine is above that tier,
into the package's shared kernel cache (``minilm_np/_numba_cache``).

So the first ``minilm-np embed`` after ``pip install .`` loads its kernels instead of compiling
them (about 25 s a mode).  The kernels are compiled on a one-layer random model
(:mod:`minilm_np.random_model`): they are compiled per argument type, not per shape.  The entries
serve the installed copy because numba checks them against a hash of each source file's contents
(numba pull request 10659; 0.68.1 has it); earlier releases compare modification times, which
an install does not keep, and compile on first use as before.  Wheels built for other machines
(``MINILM_NP_PREBUILD=0``) and editable installs skip this; where it fails the build goes on and
the kernels compile on first use.
"""
import os
import subprocess
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

_WARMUP = """
import os
import sys
if sys.argv[3] == "avx2":  # the AVX2 tier, where this machine is above it (it runs the warmup)
    from llvmlite import binding
    from minilm_np.kernels._cache import AVX2_TIER, portable_target
    if portable_target(dict(binding.get_host_cpu_features())) in (None, AVX2_TIER):
        sys.exit(0)
    os.environ["NUMBA_CPU_NAME"], os.environ["NUMBA_CPU_FEATURES"] = AVX2_TIER
from minilm_np.cli import main
from minilm_np.random_model import write_random_model
# all-MiniLM-L6-v2's widths (a few kernels go parallel or not by a weight's size); a sentence
# encoder, or with a label count a cross-encoder (its head's kernels)
model = write_random_model(sys.argv[1], hidden_size=384, intermediate_size=1536, num_attention_heads=12,
                           num_labels=int(sys.argv[2]) or None)
sys.exit(main(["warmup", "--shared", "--model", model]))
"""


class BuildWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("MINILM_NP_PREBUILD", "1") == "0":
            return
        env = {k: v for k, v in os.environ.items() if k not in ("MINILM_NP_SHARED_CACHE", "NUMBA_CACHE_DIR")}
        env.update(PYTHONPATH=os.path.abspath(self.build_lib), HF_HUB_OFFLINE="1")
        # a sentence encoder and a one-label cross-encoder, for this machine's tier and the AVX2
        # one (numba may not be imported before `warmup --shared`: a process each)
        for tier in ("native", "avx2"):
            for labels in ("0", "1"):
                with tempfile.TemporaryDirectory() as model_dir:
                    done = subprocess.run([sys.executable, "-c", _WARMUP, model_dir, labels, tier], env=env,
                                          cwd=model_dir)
                if done.returncode:
                    self.warn(f"minilm-np: the kernels ({tier}) were not compiled at build time; they compile "
                              "on first use")


setup(cmdclass={"build_py": BuildWithKernels})
