"""The checkout's top-level ``kernels/`` folder never stands in for another distribution's ``kernels``.

Hugging Face ships a top-level package named ``kernels`` and transformers imports it. Run from the
repository root (``python -m pytest``, ``python -m minilm_np``), the root is first on ``sys.path``;
``kernels/`` has no ``__init__.py``, so it is at most a namespace portion there, and a regular
package anywhere on the path wins (kernels/backend.py says why).
"""
import importlib.metadata
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _installed(distribution):
    try:
        importlib.metadata.version(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _run_from_root(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))


def test_the_kernels_folder_is_not_a_regular_package():
    assert not os.path.exists(os.path.join(REPO, "kernels", "__init__.py"))
    done = _run_from_root("import minilm_np.kernels.backend as b, minilm_np.kernels.reference as r; "
                          "print(b.load_backend('numpy') is r)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


@pytest.mark.skipif(not _installed("kernels"), reason="Hugging Face's kernels distribution is not installed "
                    "(sentence-transformers >= 6.3 brings it)")
def test_hugging_face_kernels_transformers_and_minilm_np_in_one_process_from_the_root():
    done = _run_from_root(
        "import os, kernels, transformers\n"
        "from kernels import CUDAProperties  # noqa: F401, a name only Hugging Face's package has\n"
        "import minilm_np\n"
        f"assert os.path.dirname(kernels.__file__) != {os.path.join(REPO, 'kernels')!r}, kernels.__file__\n"
        "from transformers import BertConfig, BertModel\n"
        "BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37))\n"
        "print(minilm_np.load(backend='numpy').encode('hello').shape)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("(384,)")


def test_the_build_requires_the_runtime_dependencies():
    """The package build compiles the kernels (setup.py), so it needs what they import."""
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    missing = set(project["project"]["dependencies"]) - set(project["build-system"]["requires"])
    assert not missing, f"add to [build-system] requires: {sorted(missing)}"
