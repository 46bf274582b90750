"""What the packed GEMMs (sgemm, int8_gemm) share: array addresses, task plans, tile stores in LLVM IR."""
from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
import glob
import os

from llvmlite import ir
from numba import njit, types
from numba.core import config
from numba.extending import intrinsic

_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _l2_bytes(default=1 << 19):
    """One core's L2 cache in bytes, from Linux's sysfs; ``default`` where it cannot be read."""
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(index, "level")) as level, open(os.path.join(index, "size")) as size:
                if level.read().strip() == "2":
                    text = size.read().strip().upper()
                    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
                    return int(text.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return default


L2_A_BYTES = max(1 << 17, _l2_bytes() // 4)
"""Bytes of ``A`` rows one task keeps hot while it sweeps the weight panels: a quarter of L2.

Each sweep streams all the weights from L3 once, so the rows must be many enough to pay for it:
on a Xeon with 2 MiB of L2, 512 KiB (84 rows at K = 1536, not 12) took the 1536 -> 384 GEMM
from 375 to 405 GFLOP/s at 2 threads.  512 KiB of L2 gives 128 KiB, the value this had before.
Frozen into the compiled kernels (numba's cache is per CPU model, which fixes the L2 size).
"""


def cpu_has(feature):
    """True when both the host CPU and numba's code-generation target have ``feature``.

    numba targets the host's features unless ``NUMBA_CPU_FEATURES`` names others (then those).
    """
    try:
        import llvmlite.binding as llvm
        host = bool(llvm.get_host_cpu_features().get(feature, False))
        if config.CPU_FEATURES is not None:
            return host and f"+{feature}" in config.CPU_FEATURES.split(",")
        return host
    except Exception:  # pragma: no cover - non-x86 llvmlite builds, exotic hosts
        return False


HAVE_AVX512 = cpu_has("avx512f") and os.environ.get("MINILM_NP_AVX512", "1") != "0"
"""Whether the micro-kernels may use 16-lane (zmm) vectors (``$MINILM_NP_AVX512=0`` forces 8)."""


@intrinsic
def address(typingctx, arr):
    """Address of ``arr``'s first element, as int64 (the array must outlive its use)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, _I64)

    return types.int64(arr), codegen


@njit(cache=True, nogil=True)
def keep_alive(arr):
    """Use ``arr`` here, after a kernel that read it by :func:`address`.

    numba frees an array right after its last use in the function; for an array handed on by
    address that is the address computation itself, so another thread's allocation could reuse
    the memory while a kernel still reads it.  A call to this after the kernel moves the last
    use there.
    """
    return arr.shape[0]


@njit(cache=True, nogil=True)
def plan_tasks(m, n_panels, row_bytes, threads, mr):
    """How to split ``m`` rows x ``n_panels`` weight panels: ``(rb, pb, mb, parallel)``.

    ``rb`` rows x ``pb`` panels per parallel task (about four tasks per thread; one per thread
    when all the rows fit one row block), ``mb`` rows
    of ``A`` kept in L2 within a task; row blocks are multiples of the tile height ``mr``.
    """
    mb = max(mr, (L2_A_BYTES // max(row_bytes, 1)) // mr * mr)
    if threads <= 1:
        return m, n_panels, mb, False
    if m <= mb:  # few rows: split the weights only, so that each panel is read from memory once,
        # one equal share per thread (the pool hands each thread an equal run of tasks, so
        # finer tasks only add uneven ones: 72 panels in tasks of 10 gave one thread 40, the other 32)
        return m, (n_panels + threads - 1) // threads, mb, True
    target = 4 * threads
    rb = ((m + target - 1) // target + mr - 1) // mr * mr
    n_rt = (m + rb - 1) // rb
    pb = n_panels
    if n_rt < target:
        n_pt = min(n_panels, (target + n_rt - 1) // n_rt)
        pb = (n_panels + n_pt - 1) // n_pt
    return rb, pb, mb, True


def store_tile(builder, accs, c_addr, ldc, ncols, element, lanes=8):
    """Store an ``mr x (lanes * nr)`` tile of ``lanes``-lane accumulators (``accs[i][v]``, allocas) to C.

    Whole vectors while all columns are valid; at the right edge (``ncols`` < ``lanes * nr``)
    masked stores (``llvm.masked.store``: ``vmaskmovps`` / ``vpmaskmovd``, or an AVX-512 mask),
    so that nothing outside C's columns is written.  One masked store per vector, not a branch
    per lane: per-lane branches made LLVM take minutes over the wide kernels.  ``element`` is
    the IR type of one lane (4 bytes).
    """
    def c64(x):
        return ir.Constant(_I64, x)

    vector = ir.VectorType(element, lanes)
    width = lanes * len(accs[0])
    kind = "f32" if isinstance(element, ir.FloatType) else "i32"
    masked_store = builder.module.declare_intrinsic(
        f"llvm.masked.store.v{lanes}{kind}.p0", fnty=ir.FunctionType(
            ir.VoidType(), [vector, vector.as_pointer(), _I32, ir.VectorType(ir.IntType(1), lanes)]))
    full = builder.icmp_signed(">=", ncols, c64(width))
    with builder.if_else(full) as (then, otherwise):
        with then:
            for i, row in enumerate(accs):
                crow = builder.add(c_addr, builder.mul(ldc, c64(i)))
                for v, acc in enumerate(row):
                    ptr = builder.inttoptr(builder.add(crow, c64(4 * lanes * v)), vector.as_pointer())
                    builder.store(builder.load(acc), ptr, align=4)
        with otherwise:
            splat = ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes)
            undef = ir.Constant(ir.VectorType(_I64, lanes), ir.Undefined)
            limit = builder.shuffle_vector(builder.insert_element(undef, ncols, ir.Constant(_I32, 0)), undef, splat)
            masks = [builder.icmp_signed(">", limit, ir.Constant(ir.VectorType(_I64, lanes),
                                                                  [lanes * v + j for j in range(lanes)]))
                     for v in range(len(accs[0]))]
            for i, row in enumerate(accs):
                crow = builder.add(c_addr, builder.mul(ldc, c64(i)))
                for v, acc in enumerate(row):
                    ptr = builder.inttoptr(builder.add(crow, c64(4 * lanes * v)), vector.as_pointer())
                    builder.call(masked_store, [builder.load(acc), ptr, ir.Constant(_I32, 4), masks[v]])
