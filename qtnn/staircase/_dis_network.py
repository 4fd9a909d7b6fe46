"""Private kernels of :mod:`qtnn.staircase.disentangling`.

The problem ``W ~ U M V^T`` is read as a vector problem: the MPO ``M`` is a
tensor train with two qubit legs per site (output ``o_s`` and input ``i_s``),
``vec(U M V^T) = (U (x) V) vec(M)``, where ``U`` acts on the output legs and
``V`` on the input legs (``V``'s input side faces ``M``).  Everything here works
on that picture:

* :class:`Layout` -- sizes (sites, qubits per side, layers, gate width ``k``);
* :func:`schedule` -- one fixed order of all tensors of the closed network
  ``<W | (U (x) V) | M>`` (``M`` cores, gates of both staircases, conjugated
  ``W`` cores) along a *slanted* cut, so that a partial contraction carries
  only the ``W`` bond, the ``M`` bond and ``k - 1`` wires per layer: its size is
  ``chi_W * chi_M * 2**((k - 1) * (D_out + D_in))`` (times small boundary
  factors), linear in the number of sites.  The gate order of the schedule is
  a topological order of the circuit, so it is also the order of the gate
  updates of both the dense and the MPO path;
* :class:`Network` -- exact left/right environments along that order: the
  overlap ``<W, U M V^T>`` and, for each gate, its environment (the network
  with the gate cut out), with the sequential polar update of a sweep;
* :func:`apply_circuit` -- the circuit (or its inverse) applied to the legs of an
  MPO by ``k``-site blocks split with SVDs at the orthogonality centre
  (optionally capped), used for ``X = U^dagger W conj(V)`` and for
  :meth:`Disentangled.to_mpo`;
* dense kernels for the small-operator path.

Nothing here validates its arguments; :func:`qtnn.staircase.disentangle` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qtnn.staircase._mpsops import keep_rank
from qtnn.tn.linalg import polar_unitary, svd_fixed
from qtnn.tn.tensortrain import canonicalize_cores, merge_bonds

__all__: list[str] = []

Entry = tuple  # ("M", s) | ("W", s) | ("U", l, j) | ("V", l, j)


@dataclass(frozen=True)
class Layout:
    """Sizes of a disentangling problem.

    Output qubit ``q`` lives on site ``q`` (``q < n_out``), input qubit ``q`` on
    site ``q`` (``q < n_in``); the other sites have a trivial (dim 1) leg.
    """

    n_sites: int
    n_out: int
    n_in: int
    d_out: int
    d_in: int
    k: int

    def n_gates(self, side: str) -> int:
        """Gates per layer on ``side`` ("U" or "V")."""
        n = self.n_out if side == "U" else self.n_in
        return max(n - self.k + 1, 0)

    def layers(self, side: str) -> int:
        return self.d_out if side == "U" else self.d_in

    def qubits(self, side: str) -> int:
        return self.n_out if side == "U" else self.n_in


def schedule(lay: Layout) -> list[Entry]:
    """All tensors of ``<W | (U (x) V) | M>`` in contraction order.

    Gate ``(l, j)`` gets the time ``tau = j + (k - 1) l``; ``M`` site ``s`` the
    time ``max(0, s - k + 1)`` (when the first gate of layer 0 needs it); ``W``
    site ``s`` the time at which its last leg is final.  Ties: ``M`` first, then
    gates by layer (``U`` before ``V``), then ``W``.  Overlapping gates keep their
    circuit order (a gate ``(l + 1, j')`` that shares a qubit with ``(l, j)``
    has ``j' >= j - k + 1``, hence a time at least as large and a larger layer),
    so the gate subsequence is a topological order of the circuit.
    """
    k = lay.k
    ev: list[tuple[tuple[int, ...], Entry]] = []

    def t_m(s: int) -> int:
        return max(0, s - k + 1)

    for s in range(lay.n_sites):
        ev.append(((t_m(s), 0, 0, 0, s), ("M", s)))
    for code, side in enumerate(("U", "V")):
        for l_ in range(lay.layers(side)):
            for j in range(lay.n_gates(side)):
                ev.append(((j + (k - 1) * l_, 1, l_, code, j), (side, l_, j)))

    def ready(side: str, s: int) -> int:
        n, d = lay.qubits(side), lay.layers(side)
        if s < n and d > 0 and lay.n_gates(side) > 0:
            return min(s, n - k) + (k - 1) * (d - 1)
        return t_m(s)

    for s in range(lay.n_sites):
        ev.append(((max(ready("U", s), ready("V", s)), 2, 0, 0, s), ("W", s)))
    ev.sort(key=lambda e: e[0])
    return [e[1] for e in ev]


def gate_order(lay: Layout) -> list[Entry]:
    """The gates of both staircases in update order (the gates of :func:`schedule`)."""
    return [e for e in schedule(lay) if e[0] in ("U", "V")]


def circuit_order(lay: Layout, side: str) -> list[tuple[int, int]]:
    """``(l, j)`` of one staircase in its application order (layer 0 first, ``j`` ascending)."""
    return [(l_, j) for l_ in range(lay.layers(side)) for j in range(lay.n_gates(side))]


def gate_tensor(g: np.ndarray, k: int) -> np.ndarray:
    """A ``(2**k, 2**k)`` gate as a ``2k``-leg tensor (outputs, then inputs)."""
    return g.reshape((2,) * (2 * k))


def polar_update(F: np.ndarray, is_complex: bool) -> np.ndarray:
    """The gate maximising ``Re tr(G^dagger F)`` (real part for real problems)."""
    return polar_unitary(F if is_complex else F.real)


# ------------------------------------------------------------------ network
def _contract(a: np.ndarray, la: list[int], b: np.ndarray, lb: list[int]) -> tuple[np.ndarray, list[int]]:
    """Contract two labelled tensors over their shared labels."""
    shared = [x for x in la if x in lb]
    ia = [la.index(x) for x in shared]
    ib = [lb.index(x) for x in shared]
    out = np.tensordot(a, b, axes=(ia, ib))
    lo = [x for x in la if x not in shared] + [x for x in lb if x not in shared]
    return out, lo


class Network:
    """Exact contraction of ``<W | (U (x) V) | M>`` along :func:`schedule`.

    ``gates`` is a dict ``{"U": array (D_out, n_out-k+1, 2**k, 2**k), "V": ...}``
    shared with the caller (a sweep updates it in place).  ``W`` is the list of
    MPO cores of the target.  The contraction is exact (no truncation); its
    cost is dominated by the partial contractions of size
    :meth:`max_env_size`.
    """

    def __init__(self, lay: Layout, w_cores: Sequence[np.ndarray], gates: dict[str, np.ndarray],
                 is_complex: bool) -> None:
        self.lay = lay
        self.gates = gates
        self.is_complex = is_complex
        self.order = schedule(lay)
        n = lay.n_sites
        counter = iter(range(10**9))
        wb = [None] + [next(counter) for _ in range(n - 1)] + [None]
        mb = [None] + [next(counter) for _ in range(n - 1)] + [None]
        # wires: per side, per site, the current label (M leg first)
        m_leg: dict[str, list[int]] = {}
        w_leg: dict[str, list[int]] = {}
        self.gate_labels: dict[tuple[str, int, int], list[int]] = {}
        for side in ("U", "V"):
            cur = [next(counter) for _ in range(n)]
            m_leg[side] = list(cur)
            for l_, j in circuit_order(lay, side):
                ins = cur[j:j + lay.k]
                outs = [next(counter) for _ in range(lay.k)]
                cur[j:j + lay.k] = outs
                self.gate_labels[(side, l_, j)] = outs + ins
            w_leg[side] = cur
        self._m_labels = []
        self._w_labels = []
        for s in range(n):
            self._m_labels.append(
                [x for x in (mb[s], m_leg["U"][s], m_leg["V"][s], mb[s + 1]) if x is not None])
            self._w_labels.append(
                [x for x in (wb[s], w_leg["U"][s], w_leg["V"][s], wb[s + 1]) if x is not None])
        self._w = [_squeeze_ends(np.conj(c), s, n) for s, c in enumerate(w_cores)]
        self._m: list[np.ndarray] = []
        self._right: list[tuple[np.ndarray, list[int]]] | None = None

    # --------------------------------------------------------------- pieces
    def _tensor(self, e: Entry) -> tuple[np.ndarray, list[int]]:
        if e[0] == "M":
            return self._m[e[1]], self._m_labels[e[1]]
        if e[0] == "W":
            return self._w[e[1]], self._w_labels[e[1]]
        return gate_tensor(self.gates[e[0]][e[1], e[2]], self.lay.k), self.gate_labels[e]

    def set_m(self, m_cores: Sequence[np.ndarray]) -> None:
        """Use these ``M`` cores (invalidates the stored environments)."""
        n = self.lay.n_sites
        self._m = [_squeeze_ends(c, s, n) for s, c in enumerate(m_cores)]
        self._m_shapes = [tuple(c.shape) for c in m_cores]
        self._right = None

    def invalidate(self) -> None:
        """Forget the stored environments (after the gates changed)."""
        self._right = None

    def max_env_size(self) -> int:
        """Largest partial contraction (entries) along the schedule, from the shapes only."""
        dims: dict[int, int] = {}
        for e in self.order:
            t, lab = self._shape_of(e)
            for x, d in zip(lab, t, strict=True):
                dims[x] = d
        open_: set[int] = set()
        best = 1
        for e in self.order:
            _, lab = self._shape_of(e)
            for x in lab:
                if x in open_:
                    open_.remove(x)
                else:
                    open_.add(x)
            best = max(best, math.prod(dims[x] for x in open_))
        return best

    def _shape_of(self, e: Entry) -> tuple[tuple[int, ...], list[int]]:
        if e[0] in ("U", "V"):
            return (2,) * (2 * self.lay.k), self.gate_labels[e]
        t, lab = self._tensor(e)
        return t.shape, lab

    # ---------------------------------------------------------- contractions
    def prepare(self) -> complex:
        """Right environments for the current gates and ``M``; returns the overlap."""
        acc: tuple[np.ndarray, list[int]] = (np.ones(()), [])
        right = [acc]
        for e in reversed(self.order):
            t, lab = self._tensor(e)
            acc = _contract(acc[0], acc[1], t, lab)
            right.append(acc)
        right.reverse()
        self._right = right
        return complex(right[0][0])

    def overlap(self) -> complex:
        """``<W, U M V^T>`` (``W`` conjugated) for the current state."""
        return self.prepare()

    def sweep(self) -> complex:
        """One pass of polar updates over all gates in schedule order.

        Gate ``p`` sees the updated gates before it (left environment, built as
        the sweep goes) and the old gates after it (right environments of
        :meth:`prepare`).  Returns the overlap with the new gates.
        """
        if self._right is None:
            self.prepare()
        right: list[tuple[np.ndarray, list[int]]] = self._right  # type: ignore[assignment]
        k = self.lay.k
        acc: tuple[np.ndarray, list[int]] = (np.ones(()), [])
        for p, e in enumerate(self.order):
            if e[0] in ("U", "V"):
                env, lab = _contract(acc[0], acc[1], right[p + 1][0], right[p + 1][1])
                want = self.gate_labels[e]
                env = env.transpose([lab.index(x) for x in want]).reshape(2**k, 2**k)
                self.gates[e[0]][e[1], e[2]] = polar_update(np.conj(env), self.is_complex)
            t, lab = self._tensor(e)
            acc = _contract(acc[0], acc[1], t, lab)
        self._right = None
        return complex(acc[0])

    def gradients(self) -> tuple[complex, dict[Entry, np.ndarray], list[np.ndarray]]:
        """Overlap and its derivatives for the current state (nothing is updated).

        Returns ``(ov, gate_env, m_env)``: ``gate_env[e]`` is the holomorphic
        derivative ``d ov / d g`` of gate ``e`` as a ``(2**k, 2**k)`` matrix and
        ``m_env[s]`` that of ``M``'s core ``s`` (its shape).
        """
        if self._right is None:
            self.prepare()
        right: list[tuple[np.ndarray, list[int]]] = self._right  # type: ignore[assignment]
        k = self.lay.k
        acc: tuple[np.ndarray, list[int]] = (np.ones(()), [])
        genv: dict[Entry, np.ndarray] = {}
        menv: list[np.ndarray] = [np.zeros(0)] * self.lay.n_sites
        for p, e in enumerate(self.order):
            if e[0] != "W":
                env, lab = _contract(acc[0], acc[1], right[p + 1][0], right[p + 1][1])
                if e[0] == "M":
                    want = self._m_labels[e[1]]
                    menv[e[1]] = env.transpose([lab.index(x) for x in want]).reshape(
                        self._m_shapes[e[1]])
                else:
                    want = self.gate_labels[e]
                    genv[e] = env.transpose([lab.index(x) for x in want]).reshape(2**k, 2**k)
            t, lab = self._tensor(e)
            acc = _contract(acc[0], acc[1], t, lab)
        return complex(acc[0]), genv, menv


def _squeeze_ends(core: np.ndarray, s: int, n: int) -> np.ndarray:
    """Drop the size-1 end bonds of the first/last core."""
    c = core
    if s == n - 1:
        c = c[..., 0]
    if s == 0:
        c = c[0]
    return c


# ------------------------------------------------------ circuits on an MPO
def _apply_block(block: np.ndarray, g_out: np.ndarray | None, g_in: np.ndarray | None, k: int) -> np.ndarray:
    """Gates on the output / input legs of a ``k``-site block ``(l, o0, i0, ..., r)``."""
    nd = block.ndim
    o_ax = list(range(1, nd - 1, 2))
    i_ax = list(range(2, nd - 1, 2))
    if g_out is not None:
        block = np.tensordot(gate_tensor(g_out, k), block, axes=(list(range(k, 2 * k)), o_ax))
        # gate outputs now lead: (o'..., l, i0, i1, ..., r) in the order of the remaining axes
        rest = [a for a in range(nd) if a not in o_ax]  # original positions left, in order
        perm = [0] * nd
        for pos, a in enumerate(o_ax):
            perm[a] = pos
        for pos, a in enumerate(rest):
            perm[a] = k + pos
        block = block.transpose(perm)
    if g_in is not None:
        block = np.tensordot(gate_tensor(g_in, k), block, axes=(list(range(k, 2 * k)), i_ax))
        rest = [a for a in range(nd) if a not in i_ax]
        perm = [0] * nd
        for pos, a in enumerate(i_ax):
            perm[a] = pos
        for pos, a in enumerate(rest):
            perm[a] = k + pos
        block = block.transpose(perm)
    return block


def _split_ltr(block: np.ndarray, cap: int | None) -> list[np.ndarray]:
    """Split ``(l, o0, i0, ..., r)`` into cores left to right (left-orthonormal but the last)."""
    out = []
    while block.ndim > 4:
        l_, o, i = block.shape[:3]
        rest_shape = block.shape[3:]
        u, s, vh = svd_fixed(block.reshape(l_ * o * i, -1))
        keep = keep_rank(s, cap)
        out.append(u[:, :keep].reshape(l_, o, i, keep))
        block = (s[:keep, None] * vh[:keep]).reshape((keep, *rest_shape))
    out.append(block)
    return out


def _split_rtl(block: np.ndarray, cap: int | None) -> list[np.ndarray]:
    """Split ``(l, o0, i0, ..., r)`` into cores right to left (right-orthonormal but the first)."""
    out = []
    while block.ndim > 4:
        o, i, r = block.shape[-3:]
        lead = block.shape[:-3]
        u, s, vh = svd_fixed(block.reshape(-1, o * i * r))
        keep = keep_rank(s, cap)
        out.append(vh[:keep].reshape(keep, o, i, r))
        block = (u[:, :keep] * s[:keep]).reshape((*lead, keep))
    out.append(block)
    return out[::-1]


def apply_circuit(cores: Sequence[np.ndarray], lay: Layout, gates: dict[str, np.ndarray], *,
                  inverse: bool, cap: int | None) -> list[np.ndarray]:
    """``(U (x) V) vec(A)`` or, with ``inverse``, ``(U^dagger (x) V^dagger) vec(A)`` on MPO cores.

    In matrix terms: ``U A V^T`` or ``U^dagger A conj(V)``.  Layer ``t`` of both
    staircases is applied in one pass over ``k``-site blocks (ascending ``j`` for
    the circuit, descending with conjugate-transposed gates for the inverse);
    each block is split by SVDs at the orthogonality centre, keeping at most
    ``cap`` values per bond (``None``: exact up to numerically zero values).
    """
    k = lay.k
    cs = [np.asarray(c) for c in cores]
    n = len(cs)
    depth = max(lay.d_out, lay.d_in)
    for t in range(depth):
        lu = (lay.d_out - 1 - t) if inverse else t
        lv = (lay.d_in - 1 - t) if inverse else t
        gu = gates["U"][lu] if 0 <= lu < lay.d_out and lay.n_gates("U") > 0 else None
        gv = gates["V"][lv] if 0 <= lv < lay.d_in and lay.n_gates("V") > 0 else None
        if inverse:
            gu = None if gu is None else np.conj(np.swapaxes(gu, -1, -2))
            gv = None if gv is None else np.conj(np.swapaxes(gv, -1, -2))
        jmax = max(len(gu) if gu is not None else 0, len(gv) if gv is not None else 0) - 1
        if jmax < 0:
            continue
        js = range(jmax, -1, -1) if inverse else range(jmax + 1)
        cs = canonicalize_cores(cs, min(jmax + k - 1, n - 1)) if inverse else canonicalize_cores(cs, 0)
        for j in js:
            a = gu[j] if gu is not None and j < len(gu) else None
            b = gv[j] if gv is not None and j < len(gv) else None
            block = _apply_block(merge_bonds(cs[j:j + k]), a, b, k)  # (l, o0, i0, o1, i1, ..., r)
            cs[j:j + k] = _split_rtl(block, cap) if inverse else _split_ltr(block, cap)
    return cs


# ------------------------------------------------------------ dense kernels
def dense_apply(T: np.ndarray, g: np.ndarray, axes: Sequence[int], k: int) -> np.ndarray:
    """Gate ``g`` on the given ``k`` axes of a qubit tensor ``T`` (all legs of size 2)."""
    src = list(axes)
    t = np.moveaxis(T, src, list(range(k)))
    shp = t.shape
    t = (g @ t.reshape(2**k, -1)).reshape(shp)
    return np.moveaxis(t, list(range(k)), src)


def dense_env(top: np.ndarray, bot: np.ndarray, axes: Sequence[int], k: int) -> np.ndarray:
    """``F = top_red @ bot_red^dagger`` over all legs but ``axes``."""
    src = list(axes)
    a = np.moveaxis(top, src, list(range(k))).reshape(2**k, -1)
    b = np.moveaxis(bot, src, list(range(k))).reshape(2**k, -1)
    return a @ b.conj().T


def gate_axes(lay: Layout, side: str, j: int) -> list[int]:
    """Axes of a qubit tensor ``(o_0..o_{n_out-1}, i_0..i_{n_in-1})`` touched by gate ``j``."""
    base = 0 if side == "U" else lay.n_out
    return list(range(base + j, base + j + lay.k))


def dense_circuit(T: np.ndarray, lay: Layout, gates: dict[str, np.ndarray], *, inverse: bool) -> np.ndarray:
    """``(U (x) V) T`` or ``(U^dagger (x) V^dagger) T`` for a qubit tensor ``T``."""
    seq = [(side, l_, j) for side in ("U", "V") for l_, j in circuit_order(lay, side)]
    if inverse:
        seq = seq[::-1]
    for side, l_, j in seq:
        g = gates[side][l_, j]
        if inverse:
            g = g.conj().T
        T = dense_apply(T, g, gate_axes(lay, side, j), lay.k)
    return T
