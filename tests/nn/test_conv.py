"""Tests of qtnn.nn.conv: Tucker-2 and CP factorized 2-d convolutions."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from qtnn.errors import QtnnError
from qtnn.nn.conv import CPConv2d, TuckerConv2d

F64 = torch.float64
ATOL = 1e-10

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _dense(cin, cout, k, seed=0, dtype=F64, device="cpu", **kw):
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, dtype=dtype, device=device, **kw)


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------
# exactness against nn.Conv2d over a geometry grid
# ---------------------------------------------------------------------------

GRID = [
    (k, s, p, d, b)
    for k, s, p, d, b in itertools.product(
        [1, 3, (3, 5)], [1, 2], [0, 1, (1, 2), "same", "valid"], [1, 2], [True, False])
    if not (p == "same" and s != 1)
]


def _grid_id(case):
    k, s, p, d, b = case
    return f"k{k}-s{s}-p{p}-d{d}-{'bias' if b else 'nobias'}".replace(" ", "")


@pytest.mark.parametrize("case", GRID, ids=_grid_id)
@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d], ids=["tucker", "cp"])
def test_full_rank_matches_dense(cls, case):
    k, s, p, d, b = case
    conv = _dense(3, 5, k, seed=1, stride=s, padding=p, dilation=d, bias=b)
    layer = cls.from_conv(conv)
    x = torch.randn(2, 3, 11, 13, dtype=F64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=ATOL)
    torch.testing.assert_close(layer.weight, conv.weight, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, (2, 1), "same"])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d], ids=["tucker", "cp"])
def test_padding_modes_match_dense(cls, dilation, padding, mode):
    # even kernel width: 'same' pads asymmetrically (the extra column on the right)
    conv = _dense(3, 4, (3, 4), seed=3, padding=padding, dilation=dilation, padding_mode=mode)
    layer = cls.from_conv(conv)
    x = torch.randn(2, 3, 9, 10, dtype=F64)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=ATOL)


@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d], ids=["tucker", "cp"])
def test_forward_equals_dense_conv_with_weight_at_low_rank(cls):
    torch.manual_seed(0)
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    layer = (TuckerConv2d(6, 7, (3, 5), ranks=(3, 2), dtype=F64, **kw) if cls is TuckerConv2d
             else CPConv2d(6, 7, (3, 5), rank=4, dtype=F64, **kw))
    x = torch.randn(2, 6, 12, 15, dtype=F64)
    ref = nn.functional.conv2d(x, layer.weight, layer.bias, **kw)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=ATOL)
    # unbatched (C, H, W) input
    torch.testing.assert_close(layer(x[0]), ref[0], rtol=0, atol=ATOL)


def test_tucker_full_rank_when_unfolding_is_short():
    # out > in*kh*kw and ranks above the unfolding rank: orthonormal completion
    conv = _dense(1, 6, 1, seed=4)
    x = torch.randn(2, 1, 5, 4, dtype=F64)
    assert TuckerConv2d.from_conv(conv).ranks == (1, 1)
    for method in ("hosvd", "hooi"):
        layer = TuckerConv2d.from_conv(conv, ranks=(4, 1), method=method)
        torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=ATOL)
        u = layer.factor_out
        torch.testing.assert_close(u.T @ u, torch.eye(4, dtype=F64), rtol=0, atol=1e-12)


def test_cp_rank_above_bound_is_exact_and_padded():
    conv = _dense(2, 5, 3, seed=5, padding=1)
    bound = CPConv2d.exact_rank(5, 2, 3)
    assert bound == 2 * 3 * 3
    layer = CPConv2d.from_conv(conv, rank=bound + 3)
    assert layer.rank == bound + 3
    x = torch.randn(1, 2, 6, 7, dtype=F64)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=ATOL)
    assert torch.all(layer.factor_out[:, bound:] == 0)


@pytest.mark.parametrize("shape,expected", [((8, 2, 3, 3), 18), ((2, 8, 3, 3), 18),
                                            ((4, 4, 1, 7), 16), ((4, 4, 7, 1), 16)])
def test_cp_exact_construction_picks_smallest_bound(shape, expected):
    out, cin, kh, kw = shape
    assert CPConv2d.exact_rank(out, cin, (kh, kw)) == expected
    conv = _dense(cin, out, (kh, kw), seed=6)
    layer = CPConv2d.from_conv(conv)
    assert layer.rank == expected
    torch.testing.assert_close(layer.weight, conv.weight, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------
# round trip, weight property
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d], ids=["tucker", "cp"])
def test_to_conv_round_trip(cls):
    torch.manual_seed(7)
    kw = dict(stride=2, padding=(1, 2), dilation=(2, 1), padding_mode="reflect")
    layer = (TuckerConv2d(4, 6, (3, 5), ranks=(3, 2), dtype=F64, **kw) if cls is TuckerConv2d
             else CPConv2d(4, 6, (3, 5), rank=5, dtype=F64, **kw))
    dense = layer.to_conv()
    assert isinstance(dense, nn.Conv2d)
    assert dense.weight.dtype == F64 and dense.padding_mode == "reflect"
    torch.testing.assert_close(dense.weight, layer.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(dense.bias, layer.bias.detach(), rtol=0, atol=0)
    x = torch.randn(2, 4, 10, 12, dtype=F64)
    torch.testing.assert_close(dense(x), layer(x), rtol=0, atol=ATOL)
    # dense -> factorized (exact) -> dense
    back = cls.from_conv(dense).to_conv()
    torch.testing.assert_close(back.weight, dense.weight, rtol=0, atol=1e-12)
    torch.testing.assert_close(back(x), dense(x), rtol=0, atol=ATOL)


def test_weight_is_reconstructed_kernel():
    torch.manual_seed(8)
    t = TuckerConv2d(5, 4, (2, 3), ranks=(3, 2), dtype=F64)
    ref = torch.zeros(4, 5, 2, 3, dtype=F64)
    for o, c, a, b in itertools.product(range(4), range(5), range(3), range(2)):
        ref[o, c] += t.factor_out[o, a] * t.core[a, b] * t.factor_in[c, b]
    torch.testing.assert_close(t.weight, ref, rtol=0, atol=1e-14)

    c = CPConv2d(5, 4, (2, 3), rank=3, dtype=F64)
    ref = torch.zeros(4, 5, 2, 3, dtype=F64)
    for r in range(3):
        ref += (c.factor_out[:, r, None, None, None] * c.factor_in[None, :, r, None, None]
                * c.factor_h[None, None, :, r, None] * c.factor_w[None, None, None, :, r])
    torch.testing.assert_close(c.weight, ref, rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------
# Tucker truncation
# ---------------------------------------------------------------------------

def _tails(w, r_out, r_in):
    out, cin = w.shape[:2]
    s0 = torch.linalg.svdvals(w.reshape(out, -1))
    s1 = torch.linalg.svdvals(w.transpose(0, 1).reshape(cin, -1))
    return float((s0[r_out:] ** 2).sum()), float((s1[r_in:] ** 2).sum())


def test_tucker_truncation_bounds_and_monotonicity():
    conv = _dense(8, 10, 3, seed=9)
    w = conv.weight.detach()
    w2 = float((w ** 2).sum())
    prev = None
    for r_out, r_in in [(1, 1), (2, 2), (4, 3), (6, 5), (8, 6), (10, 8)]:
        hosvd = TuckerConv2d.from_conv(conv, ranks=(r_out, r_in), method="hosvd")
        hooi = TuckerConv2d.from_conv(conv, ranks=(r_out, r_in), method="hooi")
        e_hosvd = float(((hosvd.weight.detach() - w) ** 2).sum())
        e_hooi = float(((hooi.weight.detach() - w) ** 2).sum())
        t0, t1 = _tails(w, r_out, r_in)
        # orthonormal factors: ||K - K_hat||^2 = ||K||^2 - ||G||^2
        for layer, e in ((hosvd, e_hosvd), (hooi, e_hooi)):
            assert abs(e - (w2 - float((layer.core.detach() ** 2).sum()))) <= 1e-12 * w2
        # any multilinear-rank-(r_out, r_in) approximation is at least each tail;
        # HOSVD is at most their sum (De Lathauwer et al. 2000); HOOI <= HOSVD
        assert max(t0, t1) <= e_hooi * (1 + 1e-12) + 1e-14
        assert e_hooi <= e_hosvd * (1 + 1e-12) + 1e-14
        assert e_hosvd <= (t0 + t1) * (1 + 1e-12) + 1e-14
        # nested HOSVD subspaces: the error decreases as the ranks grow
        if prev is not None:
            assert e_hosvd <= prev * (1 + 1e-12) + 1e-14
        prev = e_hosvd
    assert prev <= 1e-24 * w2  # (10, 8) is full rank


def test_hooi_strictly_improves_somewhere_and_is_deterministic():
    conv = _dense(8, 10, 3, seed=10)
    w = conv.weight.detach()
    a = TuckerConv2d.from_conv(conv, ranks=(3, 2), method="hooi")
    b = TuckerConv2d.from_conv(conv, ranks=(3, 2), method="hooi")
    h = TuckerConv2d.from_conv(conv, ranks=(3, 2), method="hosvd")
    assert torch.equal(a.core, b.core) and torch.equal(a.factor_in, b.factor_in)
    assert float((a.weight.detach() - w).norm()) < float((h.weight.detach() - w).norm())
    # sign gauge: largest-magnitude entry of each factor column is positive
    for u in (a.factor_in, a.factor_out, h.factor_in, h.factor_out):
        idx = u.abs().argmax(dim=0)
        assert torch.all(u[idx, torch.arange(u.shape[1])] > 0)


# ---------------------------------------------------------------------------
# CP ALS
# ---------------------------------------------------------------------------

def _planted_cp_conv(rank=3, shape=(6, 5, 3, 3), seed=11):
    g = torch.Generator().manual_seed(seed)
    out, cin, kh, kw = shape
    fs = [torch.randn(d, rank, generator=g, dtype=F64) for d in shape]
    w = torch.einsum("or,cr,hr,wr->ochw", *fs)
    conv = nn.Conv2d(cin, out, (kh, kw), padding=1, dtype=F64)
    with torch.no_grad():
        conv.weight.copy_(w)
    return conv


def test_cp_als_recovers_planted_rank3_and_error_decreases():
    conv = _planted_cp_conv()
    w = conv.weight.detach()
    errs = [_rel(CPConv2d.from_conv(conv, rank=r).weight, w) for r in (1, 2, 3)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-6
    layer = CPConv2d.from_conv(conv, rank=3)
    x = torch.randn(2, 5, 7, 8, dtype=F64)
    assert _rel(layer(x), conv(x)) < 1e-6


def test_cp_als_is_deterministic():
    conv = _dense(5, 6, 3, seed=12)
    a = CPConv2d.from_conv(conv, rank=4, max_iter=50)
    b = CPConv2d.from_conv(conv, rank=4, max_iter=50)
    for name in ("factor_out", "factor_in", "factor_h", "factor_w", "bias"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d], ids=["tucker", "cp"])
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_gradcheck(cls, padding_mode):
    torch.manual_seed(13)
    kw = dict(stride=(1, 2), padding="same" if padding_mode == "zeros" else 1,
              padding_mode=padding_mode, dtype=F64)
    if kw["padding"] == "same":
        kw["stride"] = 1
    layer = (TuckerConv2d(2, 3, (2, 3), ranks=(2, 2), **kw) if cls is TuckerConv2d
             else CPConv2d(2, 3, (2, 3), rank=2, **kw))
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
    x = torch.randn(1, 2, 4, 5, dtype=F64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# dtype / device
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_dtype_device(dtype, device):
    conv = _dense(4, 6, 3, seed=14, dtype=dtype, device=device, padding=1)
    x = torch.randn(2, 4, 8, 9, dtype=dtype, device=device)
    tol = 1e-4 if dtype == torch.float32 else ATOL
    for layer in (TuckerConv2d.from_conv(conv), CPConv2d.from_conv(conv),
                  TuckerConv2d.from_conv(conv, ranks=2), CPConv2d.from_conv(conv, rank=3)):
        for p in layer.parameters():
            assert p.dtype == dtype and p.device.type == device
        y = layer(x)
        assert y.dtype == dtype and y.device.type == device
        ref = nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
        torch.testing.assert_close(y, ref, rtol=0, atol=tol)
    torch.testing.assert_close(TuckerConv2d.from_conv(conv)(x), conv(x), rtol=0, atol=tol)
    torch.testing.assert_close(CPConv2d.from_conv(conv)(x), conv(x), rtol=0, atol=tol)
    fresh = TuckerConv2d(4, 6, 3, ranks=2, dtype=dtype, device=device)
    assert fresh.core.dtype == dtype and fresh.to_conv().weight.device.type == device


# ---------------------------------------------------------------------------
# default init scale
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@torch.no_grad()
def test_default_init_output_scale(bias):
    x = torch.randn(4, 16, 12, 12, generator=torch.Generator().manual_seed(0))
    stds = {"dense": [], "tucker": [], "cp": []}
    for seed in range(4):
        torch.manual_seed(seed)
        stds["dense"].append(float(nn.Conv2d(16, 32, 3, bias=bias)(x).std()))
        torch.manual_seed(seed)
        stds["tucker"].append(float(TuckerConv2d(16, 32, 3, ranks=(8, 4), bias=bias)(x).std()))
        torch.manual_seed(seed)
        stds["cp"].append(float(CPConv2d(16, 32, 3, rank=8, bias=bias)(x).std()))
    ref = sum(stds["dense"]) / 4
    for key in ("tucker", "cp"):
        ratio = sum(stds[key]) / 4 / ref
        assert 1 / 1.5 < ratio < 1.5, (key, ratio)


@torch.no_grad()
def test_default_init_kernel_variance():
    torch.manual_seed(0)
    fan_in = 16 * 9
    t = TuckerConv2d(16, 32, 3, ranks=(8, 4))
    c = CPConv2d(16, 32, 3, rank=8)
    for layer in (t, c):
        var = float(layer.weight.detach().var()) * 3 * fan_in
        assert 0.6 < var < 1.6, (type(layer).__name__, var)


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls,rank_kw", [(TuckerConv2d, {"ranks": 2}), (CPConv2d, {"rank": 2})],
                         ids=["tucker", "cp"])
def test_constructor_rejects_bad_geometry(cls, rank_kw):
    with pytest.raises(QtnnError, match=r"groups must be 1 \(only groups=1 is supported\), got 2"):
        cls(4, 4, 3, groups=2, **rank_kw)
    with pytest.raises(QtnnError, match=r"padding='same' is only supported with stride 1, got stride=\(2, 2\)"):
        cls(4, 4, 3, stride=2, padding="same", **rank_kw)
    with pytest.raises(QtnnError, match=r"padding_mode must be one of .*; got 'bogus'"):
        cls(4, 4, 3, padding_mode="bogus", **rank_kw)
    with pytest.raises(QtnnError, match=r"kernel_size must be an integer >= 1 or a pair of them, got 0"):
        cls(4, 4, 0, **rank_kw)
    with pytest.raises(QtnnError, match=r"kernel_size must be .*, got \(3, 3, 3\)"):
        cls(4, 4, (3, 3, 3), **rank_kw)
    with pytest.raises(QtnnError, match=r"in_channels must be an integer >= 1, got 0"):
        cls(0, 4, 3, **rank_kw)
    with pytest.raises(QtnnError, match=r"out_channels must be an integer, got 2.5"):
        cls(4, 2.5, 3, **rank_kw)
    with pytest.raises(QtnnError, match=r"stride must be an integer >= 1 or a pair of them, got \(1, 0\)"):
        cls(4, 4, 3, stride=(1, 0), **rank_kw)
    with pytest.raises(QtnnError, match=r"dilation must be .*, got -1"):
        cls(4, 4, 3, dilation=-1, **rank_kw)
    with pytest.raises(QtnnError, match=r"padding must be .*'same' or 'valid'; got 'full'"):
        cls(4, 4, 3, padding="full", **rank_kw)
    with pytest.raises(QtnnError, match=r"padding must be .*; got -1"):
        cls(4, 4, 3, padding=-1, **rank_kw)
    with pytest.raises(QtnnError, match=r"bias must be a bool, got 'yes'"):
        cls(4, 4, 3, bias="yes", **rank_kw)
    with pytest.raises(QtnnError, match=r"dtype must be a real floating torch.dtype or None, got torch.int64"):
        cls(4, 4, 3, dtype=torch.int64, **rank_kw)


@pytest.mark.parametrize("ranks,msg", [
    (0, r"ranks must be a positive integer or a pair \(r_out, r_in\) of them, got 0"),
    (-1, r"ranks must be .*, got -1"),
    ((2, 0), r"ranks must be .*, got \(2, 0\)"),
    ((2, 2, 2), r"ranks must be .*, got \(2, 2, 2\)"),
    (2.0, r"ranks must be .*, got 2.0"),
    ((7, 2), r"ranks\[0\] \(r_out\) must be <= out_channels=6, got ranks=\(7, 2\)"),
    ((2, 5), r"ranks\[1\] \(r_in\) must be <= in_channels=4, got ranks=\(2, 5\)"),
    (5, r"ranks\[1\] \(r_in\) must be <= in_channels=4, got ranks=5"),
])
def test_tucker_rejects_bad_ranks(ranks, msg):
    with pytest.raises(QtnnError, match=msg):
        TuckerConv2d(4, 6, 3, ranks=ranks)
    with pytest.raises(QtnnError, match=msg):
        TuckerConv2d.from_conv(_dense(4, 6, 3), ranks=ranks)


@pytest.mark.parametrize("rank,msg", [(0, r"rank must be an integer >= 1, got 0"),
                                      (-3, r"rank must be an integer >= 1, got -3"),
                                      (1.5, r"rank must be an integer, got 1.5")])
def test_cp_rejects_bad_rank(rank, msg):
    with pytest.raises(QtnnError, match=msg):
        CPConv2d(4, 6, 3, rank=rank)
    with pytest.raises(QtnnError, match=msg):
        CPConv2d.from_conv(_dense(4, 6, 3), rank=rank)


@pytest.mark.parametrize("cls", [TuckerConv2d, CPConv2d], ids=["tucker", "cp"])
def test_from_conv_rejects_bad_inputs(cls):
    with pytest.raises(QtnnError, match=r"conv must be a torch.nn.Conv2d, got Linear"):
        cls.from_conv(nn.Linear(3, 3))
    with pytest.raises(QtnnError, match=r"conv must be a torch.nn.Conv2d, got ConvTranspose2d"):
        cls.from_conv(nn.ConvTranspose2d(3, 3, 3))
    with pytest.raises(QtnnError, match=r"conv must be a torch.nn.Conv2d, got Tensor"):
        cls.from_conv(torch.zeros(3, 3, 3, 3))
    bad = _dense(3, 4, 3)
    with torch.no_grad():
        bad.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(QtnnError, match=r"conv.weight must be finite, got NaN or inf"):
        cls.from_conv(bad)
    with torch.no_grad():
        bad.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(QtnnError, match=r"conv.weight must be finite"):
        cls.from_conv(bad)
    with pytest.raises(QtnnError, match=r"conv.groups must be 1 \(only groups=1 is supported\), got 2"):
        cls.from_conv(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(QtnnError, match=r"conv must have an initialized weight"):
        cls.from_conv(nn.LazyConv2d(4, 3))


def test_from_conv_rejects_bad_options():
    conv = _dense(3, 4, 3)
    with pytest.raises(QtnnError, match=r"method must be one of 'hosvd', 'hooi'; got 'svd'"):
        TuckerConv2d.from_conv(conv, method="svd")
    with pytest.raises(QtnnError, match=r"max_iter must be an integer >= 0, got -1"):
        TuckerConv2d.from_conv(conv, ranks=2, max_iter=-1)
    with pytest.raises(QtnnError, match=r"tol must be a finite real number, got nan"):
        TuckerConv2d.from_conv(conv, ranks=2, tol=float("nan"))
    with pytest.raises(QtnnError, match=r"max_iter must be an integer >= 1, got 0"):
        CPConv2d.from_conv(conv, rank=2, max_iter=0)
    with pytest.raises(QtnnError, match=r"seed must be an integer >= 0, got -1"):
        CPConv2d.from_conv(conv, rank=2, seed=-1)


@pytest.mark.parametrize("cls,rank_kw", [(TuckerConv2d, {"ranks": 2}), (CPConv2d, {"rank": 2})],
                         ids=["tucker", "cp"])
def test_forward_rejects_bad_input(cls, rank_kw):
    layer = cls(4, 5, 3, **rank_kw)
    with pytest.raises(QtnnError, match=r"input must have 4 channels \(dim -3\), got shape \(2, 3, 8, 8\)"):
        layer(torch.randn(2, 3, 8, 8))
    with pytest.raises(QtnnError, match=r"input must be 3-d \(C, H, W\) or 4-d \(N, C, H, W\), got shape \(8, 8\)"):
        layer(torch.randn(8, 8))
    with pytest.raises(QtnnError, match=r"input must be a torch.Tensor, got list"):
        layer([[1.0]])
