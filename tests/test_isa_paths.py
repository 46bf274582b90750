"""Every x86 code path a user's CPU may take, forced on this one: twins, batch invariance, same vectors.

Each path of :data:`isa_paths.PATHS` runs :mod:`isa_paths` in a subprocess (a path is fixed when
the kernels are imported): the numba kernels against their numpy twins, every vector bitwise the
same alone and in batches, and then the vectors of every path bitwise those of this CPU's own.
A path needs the host to have its instructions; on an AVX-512 machine all but AMX run here.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from isa_paths import MODES, PATHS, host_lacks

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def run_path(tmp_path_factory, model_dir):
    """``run_path(name)`` -> the ``.npz`` its subprocess wrote (run once per path)."""
    done = {}

    def run(name):
        if name not in done:
            env_extra, needs, _ = PATHS[name]
            missing = host_lacks(needs)
            if missing:
                pytest.skip(f"this CPU lacks {', '.join(missing)}, which the {name} path needs")
            out = tmp_path_factory.mktemp("isa") / f"{name}.npz"
            # without the target this process chose (kernels._numba_env exported it): each path
            # sets its own, or lets the kernels (or numba, for host-exact) choose
            env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
            env.update(MINILM_NP_MODEL=model_dir, HF_HUB_OFFLINE="1", **env_extra)
            proc = subprocess.run([sys.executable, os.path.join(HERE, "isa_paths.py"), str(out)], env=env,
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{name} path failed:\n{proc.stderr[-4000:]}"
            done[name] = np.load(out)
        return done[name]

    return run


@pytest.mark.parametrize("name", list(PATHS))
def test_path_takes_its_kernels_and_matches_the_native_vectors(run_path, name):
    got = run_path(name)
    taken = json.loads(str(got["taken"]))
    expected_int8 = PATHS[name][2]
    if expected_int8 is not None:
        assert taken["int8"] == expected_int8, taken
    if name in ("avx2", "avx-vnni"):
        assert taken["avx512_float32"] is False, taken
    if name == "host-exact":  # numba's own target, the exact CPU model, not the portable tier
        assert taken["target"] == "host", taken
    native = run_path("native")
    for mode in MODES:
        assert np.array_equal(got[str(mode)], native[str(mode)]), f"{name} differs from native in mode {mode}"
