"""qtnn.apps.lm and qtnn.compress.llm: the stdlib corpus, perplexity, the block cache, layer inputs, healing, SmolLM2."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import qtnn
from qtnn.apps import lm
from qtnn.compress import llm
from qtnn.errors import QtnnError, QtnnTypeError

transformers = pytest.importorskip("transformers")

VOCAB = 300


def byte_tokenizer(text):
    return list(text.encode("utf-8"))


def tiny_llama(seed=0, layers=4):
    """A float64 LlamaForCausalLM: 4 blocks of width 32, vocabulary 300 (bytes and a few more)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg).double().eval()
    with torch.no_grad():  # weights large enough that every block matters
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.3 / p.shape[1] ** 0.5 * 4)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def windows():
    return (lm.corpus_windows(byte_tokenizer, "eval", 6, length=48),
            lm.corpus_windows(byte_tokenizer, "calibration", 8, length=48))


# ------------------------------------------------------------------- corpus
def test_corpus_splits_are_disjoint_and_deterministic():
    docs = lm.stdlib_documents()
    assert len(docs) > 100 and len({m for m, _ in docs}) == len(docs)
    assert all(len(t) >= 200 and t == t.strip() for _, t in docs)
    total = lm.corpus_size(byte_tokenizer, 64)
    ev = lm.corpus_windows(byte_tokenizer, "eval", total // 2, length=64)
    cal = lm.corpus_windows(byte_tokenizer, "calibration", total // 2, length=64)
    assert ev.dtype == torch.long and ev.shape == cal.shape == (total // 2, 64)
    ids = torch.tensor(lm._corpus_ids(byte_tokenizer)[: total * 64]).reshape(total, 64)
    # eval: windows from the start; calibration: from the end; no window in both
    assert torch.equal(ev, ids[: total // 2]) and torch.equal(cal[0], ids[-1])
    rows_ev = {tuple(r) for r in ev[:, :].tolist()}
    assert not rows_ev & {tuple(r) for r in cal.tolist()}
    # a split does not depend on the size of the other one
    assert torch.equal(lm.corpus_windows(byte_tokenizer, "calibration", 3, length=64), cal[:3])
    assert torch.equal(lm.corpus_windows(byte_tokenizer, "eval", 3, length=64), ev[:3])
    with pytest.raises(QtnnError, match=r"windows=\d+ of 64 tokens asked for.*per split"):
        lm.corpus_windows(byte_tokenizer, "eval", total // 2 + 1, length=64)


def test_corpus_is_the_same_in_another_process_with_another_hash_seed(windows):
    code = ("import torch; from qtnn.apps import lm; "
            "w = lm.corpus_windows(lambda s: list(s.encode()), 'eval', 6, length=48); "
            "print(hash('x'), w.sum().item(), w[3, :8].tolist())")
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                   text=True, check=True).stdout.split(" ", 1))
    assert outs[0][0] != outs[1][0]  # the hash seeds differ, the windows do not
    ev = windows[0]
    assert outs[0][1] == outs[1][1] == f"{ev.sum().item()} {ev[3, :8].tolist()}\n"


def test_corpus_bad_input():
    with pytest.raises(QtnnError, match="split must be one of 'eval', 'calibration'; got 'test'"):
        lm.corpus_windows(byte_tokenizer, "test")
    with pytest.raises(QtnnError, match="length must be an integer >= 2, got 1"):
        lm.corpus_windows(byte_tokenizer, length=1)
    with pytest.raises(QtnnTypeError, match="windows must be an integer, got 2.5"):
        lm.corpus_windows(byte_tokenizer, "eval", 2.5)
    with pytest.raises(QtnnTypeError, match="tokenizer must be a Hugging Face tokenizer or a callable"):
        lm.corpus_windows(42)
    with pytest.raises(QtnnTypeError, match="tokenizer must return a list of token ids, got str"):
        lm.corpus_windows(lambda s: s)


# --------------------------------------------------------------- perplexity
def test_perplexity_against_a_hand_computation(model, windows):
    ev, _ = windows
    ppl = llm.perplexity(model, ev, batch_size=4, progress=False)
    with torch.no_grad():
        logits = model(ev).logits
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, ev[:, 1:, None]).mean()
    assert ppl == pytest.approx(float(torch.exp(nll)), rel=1e-12)
    # the batch size changes nothing but rounding
    assert llm.perplexity(model, ev, batch_size=1, progress=False) == pytest.approx(ppl, rel=1e-12)


def test_perplexity_bad_input(model):
    with pytest.raises(QtnnTypeError, match="windows must be a torch.LongTensor"):
        llm.perplexity(model, [[1, 2, 3]], progress=False)
    with pytest.raises(QtnnTypeError, match="windows must hold integer token ids, got dtype torch.float32"):
        llm.perplexity(model, torch.zeros(2, 5), progress=False)
    with pytest.raises(QtnnError, match=r"windows must have shape \(windows >= 1, length >= 2\), got \(2, 1\)"):
        llm.perplexity(model, torch.zeros(2, 1, dtype=torch.long), progress=False)
    with pytest.raises(QtnnError, match="batch_size must be an integer >= 1, got 0"):
        llm.perplexity(model, torch.zeros(2, 5, dtype=torch.long), batch_size=0, progress=False)
    with pytest.raises(QtnnTypeError, match="model must be a torch.nn.Module, got str"):
        llm.perplexity("gpt", torch.zeros(2, 5, dtype=torch.long), progress=False)


# -------------------------------------------------------------- block cache
@pytest.mark.parametrize("block", [0, 1, 3, 4])
def test_block_cache_equals_a_full_run(model, windows, block):
    ev, _ = windows
    full = llm.perplexity(model, ev, batch_size=4, progress=False)
    cache = llm.BlockCache(model, ev, block, batch_size=4, progress=False)
    assert cache.hidden.shape == (6, 48, 32) and len(cache) == 6 and f"block={block}" in repr(cache)
    assert cache.perplexity(model, progress=False) == pytest.approx(full, rel=1e-12, abs=0)
    with torch.no_grad():
        torch.testing.assert_close(cache.logits(model), model(ev).logits, rtol=0, atol=1e-12)
    # the model's layers are put back after every cached pass
    assert len(model.model.layers) == 4


def test_block_cache_evaluates_a_variant_of_the_later_blocks(model, windows):
    ev, _ = windows
    small, _ = qtnn.compress(model, ["model.layers.2.self_attn.k_proj", "model.layers.3.mlp.up_proj"],
                             max_bond=2, progress=False)
    cache = llm.BlockCache(model, ev, 2, progress=False)
    full = llm.perplexity(small, ev, progress=False)
    assert cache.perplexity(small, progress=False) == pytest.approx(full, rel=1e-12, abs=0)
    assert full != pytest.approx(llm.perplexity(model, ev, progress=False), rel=1e-6)


def test_block_cache_bad_input(model, windows):
    ev, _ = windows
    with pytest.raises(QtnnError, match="block must be an integer <= 4, got 5"):
        llm.BlockCache(model, ev, 5, progress=False)
    with pytest.raises(QtnnError, match="model must be a Llama-style causal language model"):
        llm.BlockCache(nn.Linear(3, 3), ev, 0, progress=False)

    class Scaled(nn.Module):  # a forward that does more than the cache reproduces
        def __init__(self, inner):
            super().__init__()
            self.model, self.lm_head = inner.model, inner.lm_head

        def forward(self, input_ids, use_cache=False):
            out = self.model(input_ids=input_ids, use_cache=False).last_hidden_state
            return self.lm_head(out) * 3.0  # e.g. a logit scale

    with pytest.raises(QtnnError, match="does not reproduce a full run"):
        llm.BlockCache(Scaled(model), ev, 0, progress=False)


def test_linear_inputs_with_and_without_the_cache(model, windows):
    ev, _ = windows
    names = ["model.layers.1.mlp.down_proj", "model.layers.3.self_attn.q_proj"]
    got = llm.linear_inputs(model, names, ev, batch_size=4, progress=False)
    assert got[names[0]].shape == (6 * 48, 64) and got[names[1]].shape == (6 * 48, 32)
    assert got[names[0]].dtype == np.float64
    seen = []
    h = model.model.layers[3].self_attn.q_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model(ev)
    h.remove()
    np.testing.assert_array_equal(got[names[1]], seen[0].reshape(-1, 32).numpy())
    cached = llm.linear_inputs(model, names, block_cache=llm.BlockCache(model, ev, 1, progress=False),
                              progress=False)
    for n in names:
        np.testing.assert_allclose(cached[n], got[n], rtol=0, atol=1e-12)
    with pytest.raises(QtnnError, match="a module is in block 1, before the block cache's block 2"):
        llm.linear_inputs(model, names, block_cache=llm.BlockCache(model, ev, 2, progress=False))
    with pytest.raises(QtnnError, match="exactly one of windows and block_cache, got neither"):
        llm.linear_inputs(model, names)
    with pytest.raises(QtnnError, match="names: the model has no module named 'model.layers.9.mlp'"):
        llm.linear_inputs(model, "model.layers.9.mlp", ev)


# ------------------------------------------------------------------ healing
K_PROJ = "model.layers.2.self_attn.k_proj"


def _compressed(model, method="mpo", **kw):
    small, _ = qtnn.compress(model, K_PROJ, method, progress=False, **kw)
    return small


def _frozen_state(small):
    return {k: v.clone() for k, v in small.state_dict().items() if not k.startswith(K_PROJ)}


@pytest.mark.parametrize("objective", ["model", "outputs", "distill"])
def test_heal_trains_only_the_chosen_layer_and_lowers_its_objective(model, windows, objective):
    _, cal = windows
    small = _compressed(model, max_bond=1)
    frozen = _frozen_state(small)
    flags = {n: p.requires_grad for n, p in small.named_parameters()}
    kw = ({"original": model, "match": "model.layers.2"} if objective == "outputs"
          else {"original": model} if objective == "distill" else {})
    r = llm.heal(small, K_PROJ, cal, objective=objective, steps=15, lr=3e-2, batch_size=2,
                progress=False, **kw)
    assert r.loss_after < r.loss_before and len(r.losses) == 15 and r.block == 2
    assert r.parameters == sum(p.numel() for p in small.get_submodule(K_PROJ).parameters())
    assert r.match == (["model.layers.2"] if objective == "outputs" else [])
    for k, v in small.state_dict().items():
        if not k.startswith(K_PROJ):
            assert torch.equal(v, frozen[k]), k
    assert {n: p.requires_grad for n, p in small.named_parameters()} == flags
    assert all(p.grad is None for p in small.parameters())
    if objective == "model":  # the loss is the mean next-token cross-entropy of the windows
        assert np.exp(r.loss_after) == pytest.approx(llm.perplexity(small, cal, progress=False), rel=1e-9)
    if objective == "distill":
        assert r.loss_after == pytest.approx(_kl_by_hand(model, small, cal), rel=1e-9)


def _kl_by_hand(teacher, student, windows):
    """Mean over every position of KL(p_teacher || p_student), from full runs of both models."""
    with torch.no_grad():
        p = torch.softmax(teacher(input_ids=windows, use_cache=False).logits, -1)
        q = torch.softmax(student(input_ids=windows, use_cache=False).logits, -1)
    return float((p * (p.log() - q.log())).sum(-1).mean())


def test_heal_distill_is_the_kl_to_the_original_and_zero_for_the_original_itself(model, windows):
    _, cal = windows
    small = _compressed(model, "svd", rank=2)
    teacher = _compressed(model, max_bond=2)  # any other model of the same blocks before 2
    model.train()  # heal runs the teacher in eval mode and gives it back as it came
    r = llm.heal(small, K_PROJ, cal, original=model, objective="distill", steps=0, progress=False)
    assert model.training
    model.eval()
    assert r.objective == "distill" and r.loss_before == r.loss_after > 0.0
    assert r.loss_before == pytest.approx(_kl_by_hand(model, small, cal), rel=1e-9)
    r2 = llm.heal(small, K_PROJ, cal, original=teacher, objective="distill", steps=0, progress=False)
    assert r2.loss_before == pytest.approx(_kl_by_hand(teacher, small, cal), rel=1e-9)
    # the uncompressed model is already optimal: nothing to gain, nothing adapted to the data
    import copy

    same = copy.deepcopy(model)
    r3 = llm.heal(same, K_PROJ, cal, original=model, objective="distill", steps=5, lr=1e-2,
                  progress=False)
    assert abs(r3.loss_before) < 1e-12 and r3.loss_after <= r3.loss_before + 1e-12
    assert r3.restored or all(abs(v) < 1e-9 for v in r3.losses)


def test_heal_is_deterministic_and_takes_any_module_type(model, windows):
    _, cal = windows
    runs = []
    for _ in range(2):
        small = _compressed(model, "disentangle", max_bond=1, layers=1, sweeps=1, restarts=0, refine=2)
        r = llm.heal(small, K_PROJ, cal, steps=4, lr=1e-2, batch_size=3, seed=7, progress=False)
        runs.append((small.get_submodule(K_PROJ).state_dict(), r))
    (a, ra), (b, rb) = runs
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert ra.losses == rb.losses and ra.loss_after == rb.loss_after
    # a plain nn.Linear (no compression) and two modules at once, outside a language model
    net = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    ref = nn.Sequential(*[nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3)]).double()
    x = torch.randn(40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    last = net[4].weight.clone()
    r = llm.heal(net, ["0", "2"], x, original=ref, objective="outputs", match="4", steps=30, lr=1e-2,
                batch_size=8, progress=False)
    assert r.loss_after < r.loss_before and r.block is None and r.modules == ["0", "2"]
    assert torch.equal(net[4].weight, last)


def test_heal_with_a_given_block_cache_and_zero_steps(model, windows):
    _, cal = windows
    small = _compressed(model, max_bond=1)
    cache = llm.BlockCache(small, cal, 1, progress=False)
    r = llm.heal(small, K_PROJ, cal, steps=0, progress=False, block_cache=cache)
    assert r.block == 1 and r.loss_after == r.loss_before and r.losses == []
    assert np.exp(r.loss_before) == pytest.approx(llm.perplexity(small, cal, progress=False), rel=1e-9)
    again = _compressed(model, max_bond=1)
    r2 = qtnn.compress.heal(again, K_PROJ, cal, steps=0, progress=False, block_cache=cache)
    assert r2.loss_before == r.loss_before


def test_heal_cosine_schedule_is_torch_cosine_annealing():
    """``schedule="cosine"`` takes the same steps as Adam driven by torch's own CosineAnnealingLR."""
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    start = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    steps, lr = 12, 0.05
    healed = {}
    for schedule in ("constant", "cosine"):
        net = nn.Sequential(*[nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)]).double()
        net.load_state_dict(start.state_dict())
        r = llm.heal(net, "0", x, original=ref, objective="outputs", match="2", steps=steps, lr=lr,
                     schedule=schedule, batch_size=len(x), progress=False)
        assert r.schedule == schedule and r.as_dict()["schedule"] == schedule and not r.restored
        healed[schedule] = net[0].weight.detach().clone()
    # the reference: every window in every step (batch_size=len(x)), the learning rate from torch
    net = nn.Sequential(*[nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)]).double()
    net.load_state_dict(start.state_dict())
    with torch.no_grad():
        target = ref(x)
        scale = float((target ** 2).mean())
    opt = torch.optim.Adam(net[0].parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        opt.zero_grad()
        (((net(x) - target) ** 2).mean() / scale).backward()
        opt.step()
        sched.step()
    torch.testing.assert_close(healed["cosine"], net[0].weight.detach(), rtol=0, atol=1e-12)
    assert (healed["cosine"] - healed["constant"]).abs().max() > 1e-3


def test_heal_never_returns_a_worse_layer():
    # nearly exact, and a learning rate far too large: Adam overshoots, so the start is restored
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(5, 4)).double()
    net = nn.Sequential(nn.Linear(5, 4)).double()
    net.load_state_dict(ref.state_dict())
    with torch.no_grad():
        net[0].weight.add_(1e-3)
    x = torch.randn(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w0 = net[0].weight.clone()
    r = llm.heal(net, "0", x, original=ref, objective="outputs", steps=5, lr=5.0, batch_size=4,
                progress=False)
    assert r.restored and r.loss_after == r.loss_before > 0 and len(r.losses) == 5
    assert torch.equal(net[0].weight, w0)


def test_heal_bad_input(model, windows):
    _, cal = windows
    small = _compressed(model, max_bond=1)
    with pytest.raises(QtnnError, match="objective must be one of 'model', 'outputs', 'distill'; got 'kl'"):
        llm.heal(small, K_PROJ, cal, objective="kl", progress=False)
    with pytest.raises(QtnnError, match="objective='outputs' needs original"):
        llm.heal(small, K_PROJ, cal, objective="outputs", progress=False)
    with pytest.raises(QtnnError, match="objective='distill' needs original"):
        llm.heal(small, K_PROJ, cal, objective="distill", progress=False)
    with pytest.raises(QtnnError, match="original is for objective='outputs' or 'distill'"):
        llm.heal(small, K_PROJ, cal, original=model, progress=False)
    with pytest.raises(QtnnError, match="match is for objective='outputs' only; got match='model.layers.2'"):
        llm.heal(small, K_PROJ, cal, original=model, objective="distill", match="model.layers.2",
                 progress=False)
    with pytest.raises(QtnnError, match="original must be another model than model"):
        llm.heal(small, K_PROJ, cal, original=small, objective="distill", progress=False)
    with pytest.raises(QtnnError, match="modules: the model has no module named 'model.layers.2.attn'"):
        llm.heal(small, "model.layers.2.attn", cal, progress=False)
    with pytest.raises(QtnnError, match=r"modules: 'model.layers.2.mlp.act_fn' \(SiLUActivation\) has no parameters"):
        llm.heal(small, "model.layers.2.mlp.act_fn", cal, progress=False)
    with pytest.raises(QtnnError, match="lr must be a real number > 0, got 0.0"):
        llm.heal(small, K_PROJ, cal, lr=0.0, progress=False)
    with pytest.raises(QtnnError, match="steps must be an integer >= 0, got -1"):
        llm.heal(small, K_PROJ, cal, steps=-1, progress=False)
    with pytest.raises(QtnnError, match="schedule must be one of 'constant', 'cosine'; got 'linear'"):
        llm.heal(small, K_PROJ, cal, schedule="linear", progress=False)
    with pytest.raises(QtnnTypeError, match="data must hold integer token ids"):
        llm.heal(small, K_PROJ, cal.double(), progress=False)
    with pytest.raises(QtnnError, match="block_cache must be made from data"):
        llm.heal(small, K_PROJ, cal, progress=False,
                block_cache=llm.BlockCache(small, windows[0], 2, progress=False))
    with pytest.raises(QtnnError, match="a module is in block 2, before the block cache's block 3"):
        llm.heal(small, K_PROJ, cal, progress=False, block_cache=llm.BlockCache(small, cal, 3, progress=False))
    with pytest.raises(QtnnError, match="match: the model has no module named 'x'"):
        llm.heal(small, K_PROJ, cal, objective="outputs", original=nn.Sequential(), match="x",
                progress=False)


def smollm2_cli(monkeypatch, argv):
    """Run ``qtnn <argv>`` with smollm2's model and tokenizer swapped for a tiny Llama and bytes."""
    import argparse

    from qtnn.cli.compress import add_parser, run_cli

    tiny = tiny_llama(layers=3)
    monkeypatch.setattr(lm, "load_smollm2", lambda dtype=None, **kw: (tiny, None))
    monkeypatch.setattr(lm, "load_smollm2_tokenizer", lambda: byte_tokenizer)
    p = argparse.ArgumentParser(prog="qtnn")
    add_parser(p.add_subparsers(dest="command"))
    return tiny, run_cli(p.parse_args(argv))


def test_cli_smollm2_paths_on_a_tiny_llama(monkeypatch, capsys):
    """``qtnn compress smollm2 ...`` end to end, with the model and tokenizer swapped for tiny ones."""
    target = "model.layers.1.self_attn.k_proj"
    tiny, res = smollm2_cli(monkeypatch, [
        "compress", "smollm2", "--targets", target, "--method", "disentangle", "--max-bond", "1",
        "--layers", "2", "--engine", "grow", "--refine", "5", "--calibration", "4", "--heal", "3",
        "--perplexity", "3", "--no-progress"])
    q = res["quality"]
    assert q["what"] == "perplexity on 3 eval windows of 256 tokens"
    ev = lm.corpus_windows(byte_tokenizer, "eval", 3)
    assert q["perplexity_before"] == pytest.approx(llm.perplexity(tiny, ev, progress=False), rel=1e-9)
    (row,) = res["layers"]
    assert row["calibrated"] and row["layers_out"] == 2 and row["activation_error"] is not None
    assert res["heal"]["match"] == ["model.layers.1"] and res["heal"]["steps"] == 3
    assert res["heal"]["loss_after"] <= res["heal"]["loss_before"]
    assert "healed 1 layers" in capsys.readouterr().out


def test_cli_smollm2_heals_with_the_model_loss(monkeypatch, capsys):
    """``--heal-objective model``: the replaced layer is trained on the next-token loss of the calibration windows."""
    target = "model.layers.1.self_attn.v_proj"
    tiny, res = smollm2_cli(monkeypatch, [
        "compress", "smollm2", "--targets", target, "--method", "svd", "--rank", "2",
        "--calibration", "4", "--heal", "4", "--heal-lr", "1e-2", "--heal-objective", "model",
        "--perplexity", "3", "--no-progress"])
    h = res["heal"]
    assert h["objective"] == "model" and h["match"] == [] and h["steps"] == 4
    # loss_before is the mean next-token cross-entropy of the compressed model on the calibration
    # windows: the same model made through the API has that perplexity on them
    cal = lm.corpus_windows(byte_tokenizer, "calibration", 4)
    new, _ = qtnn.compress(tiny, target, "svd", rank=2, calibration=cal, progress=False)
    assert np.exp(h["loss_before"]) == pytest.approx(llm.perplexity(new, cal, progress=False), rel=1e-9)
    assert h["loss_after"] < h["loss_before"]
    assert "next-token loss" in capsys.readouterr().out


def test_cli_smollm2_heals_by_distillation(monkeypatch, capsys):
    """``--heal-objective distill``: the replaced layer is trained towards the original next-token distributions."""
    target = "model.layers.1.self_attn.v_proj"
    tiny, res = smollm2_cli(monkeypatch, [
        "compress", "smollm2", "--targets", target, "--method", "svd", "--rank", "2",
        "--calibration", "4", "--heal", "4", "--heal-lr", "1e-2", "--heal-objective", "distill",
        "--heal-schedule", "cosine", "--perplexity", "3", "--no-progress"])
    h = res["heal"]
    assert h["objective"] == "distill" and h["match"] == [] and h["steps"] == 4
    assert h["schedule"] == "cosine"
    cal = lm.corpus_windows(byte_tokenizer, "calibration", 4)
    new, _ = qtnn.compress(tiny, target, "svd", rank=2, calibration=cal, progress=False)
    assert h["loss_before"] == pytest.approx(_kl_by_hand(tiny, new, cal), rel=1e-9)
    assert h["loss_after"] < h["loss_before"]
    assert "KL divergence from the original" in capsys.readouterr().out
