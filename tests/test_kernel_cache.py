"""Where compiled kernels are found, which CPU they target, and the notice printed when they compile.

The subprocess checks compile one small kernel into an empty cache folder, so they stay cheap;
:mod:`test_cli` checks that ``minilm-np warmup`` leaves nothing to compile for any mode.
"""
import os
import subprocess
import sys

import pytest

from minilm_np.kernels._cache import portable_target, seed_from

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTICE = "minilm-np: compiling the numba kernels"

# Calls one kernel (``erf``; and ``l2_normalize`` with argument ``more``), prints how many kernels numba compiled.
SCRIPT = """
import sys
import numpy as np
from minilm_np.kernels.backend import load_backend
jit = load_backend("numba")
jit.erf(np.ones(4, np.float32))
if sys.argv[1:] == ["more"]:
    x = np.ones((2, 8), np.float32)
    jit.l2_normalize(x, np.empty_like(x))
from minilm_np.kernels import _locator
print("compiles", _locator.compiles)
"""


def _run(cache, shared=None, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "MINILM_NP_"))}
    env.update(NUMBA_CACHE_DIR=str(cache), MINILM_NP_SHARED_CACHE=str(shared or cache / "no-shared"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiles = int(proc.stdout.split("compiles")[-1])
    return compiles, proc.stderr


V3 = dict.fromkeys(["64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2", "cx16", "sahf", "popcnt", "sse3",
                    "sse4.1", "sse4.2", "ssse3", "avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe",
                    "xsave"], True)


def test_portable_target_names_the_x86_level_and_the_int8_extensions():
    assert portable_target({}) is None
    assert portable_target(dict(V3, avx2=False)) is None  # below x86-64-v3: numba's host default
    name, features = portable_target(dict(V3, avx512f=True, avxvnni=True, cx8=True))
    assert name == "x86-64-v3" and features.endswith("+xsave,+avxvnni") and "+avx512f" not in features
    v4 = dict(V3, avx512f=True, avx512bw=True, avx512cd=True, avx512dq=True, avx512vl=True, avx512vnni=True,
              avx512fp16=True)
    name, features = portable_target(v4)
    assert name == "x86-64-v4" and "+avx512vnni" in features and "avx512fp16" not in features


def test_seed_copies_only_what_the_user_cache_lacks(tmp_path):
    shared, user = tmp_path / "shared", tmp_path / "user"
    shared.mkdir()
    (shared / "a.nbi").write_bytes(b"shared a")
    (shared / "b.nbc").write_bytes(b"shared b")
    user.mkdir()
    (user / "a.nbi").write_bytes(b"user a")
    seed_from(str(shared), str(user))
    assert (user / "a.nbi").read_bytes() == b"user a" and (user / "b.nbc").read_bytes() == b"shared b"
    assert sorted(os.listdir(user)) == ["a.nbi", "b.nbc"]
    seed_from(str(tmp_path / "missing"), str(user))  # no shared cache: nothing happens


def test_notice_when_compiling_only_and_a_shared_cache_seeds_a_new_user(tmp_path):
    first = tmp_path / "first"
    compiles, stderr = _run(first)
    assert compiles >= 1 and stderr.count(NOTICE) == 1, stderr
    compiles, stderr = _run(first)  # warm: silent, nothing compiled
    assert compiles == 0 and NOTICE not in stderr, stderr
    compiles, stderr = _run(first, None, "more")  # kernels not compiled yet: the notice again
    assert compiles >= 1 and stderr.count(NOTICE) == 1, stderr
    # ``first`` as another user's shared, read-only cache: a new user compiles nothing, writes nothing there
    shared = first
    before = {p: os.stat(os.path.join(r, p)).st_mtime_ns for r, _, names in os.walk(shared) for p in names}
    compiles, stderr = _run(tmp_path / "second", shared, "more")
    assert compiles == 0 and NOTICE not in stderr, stderr
    after = {p: os.stat(os.path.join(r, p)).st_mtime_ns for r, _, names in os.walk(shared) for p in names}
    assert after == before
    assert os.listdir(tmp_path / "second" / "minilm_np_kernels")


def test_an_installed_copy_with_new_file_times_loads_the_kernels_compiled_before(tmp_path):
    """As ``pip install`` does with the cache that the package build compiled (setup.py): the
    files are new copies with new modification times, and the entries still serve them (numba
    checks a hash of the source, not its time, since its pull request 10659)."""
    import shutil

    cache = tmp_path / "cache"
    compiles, _ = _run(cache)
    assert compiles >= 1
    site = tmp_path / "site"
    shutil.copytree(os.path.join(REPO, "minilm_np"), site / "minilm_np", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "_numba_cache"))
    later = os.stat(os.path.join(REPO, "kernels", "rows.py")).st_mtime + 3600
    for root, _, names in os.walk(site):
        for name in names:
            os.utime(os.path.join(root, name), (later, later))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "MINILM_NP_"))}
    env.update(NUMBA_CACHE_DIR=str(cache), MINILM_NP_SHARED_CACHE=str(tmp_path / "no-shared"), PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "site" in subprocess.run([sys.executable, "-c", "import minilm_np; print(minilm_np.__file__)"], env=env,
                                    cwd=str(tmp_path), capture_output=True, text=True).stdout
    assert int(proc.stdout.split("compiles")[-1]) == 0 and NOTICE not in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", ["python -m minilm_np from the checkout", "another working directory"])
def test_cache_folder_does_not_depend_on_the_install_path(name, tmp_path):
    from minilm_np.kernels._cache import SUBDIR

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(NUMBA_CACHE_DIR=str(tmp_path))
    code = ("import minilm_np.kernels.jit as j; "
            "print(j.erf._cache._impl.locator.get_cache_path())")
    cwd = REPO if name.startswith("python") else str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == os.path.join(str(tmp_path), SUBDIR)


def test_warmup_shared_needs_a_fresh_process(capsys):
    import numba  # noqa: F401  (as in any process that already ran a kernel)

    from minilm_np import cli

    assert cli.main(["warmup", "--shared"]) == 2
    assert "before numba is imported" in capsys.readouterr().err
