"""The behaviour of the built-in relaxations (tests/test_conformance.py covers every registered one)."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
import torch.nn.functional as F

import nasplug
from nasplug.cli import main
from nasplug.core import registry
from nasplug.core.types import Task
from nasplug.testing import RelaxationConformance, TinySoftmax, tiny_instance
from nasplug_builtins.relaxations import SHAPES, Schedule

#: Built-ins only: a third-party relaxation may leave the simplex (FairDARTS's sigmoids) or add a
#: penalty by default; the promises every relaxation keeps are in nasplug.testing.
NAMES = [n for n, regs in registry.available("relaxation").items() if regs[0].builtin]
SKIP_EXACT = [n for n in NAMES if registry.load("relaxation", n).skip_is_exact]
#: Built-ins whose default schedule ends with exact zeros on moderately separated logits.
SPARSE = ["sparsemax", "entmax15", "entmax"]
#: Per-choice sparsemax (`grouped=false`): these tests call `weights` directly.
SPARSE_SETTINGS = [(name, {"grouped": False} if name == "sparsemax" else {}) for name in SPARSE] + [
    ("entmax", {"anneal": True})
]
#: Logits as DARTS's architecture optimiser leaves them after a short search: hundredths apart.
SEPARATED = torch.tensor([0.10, 0.06, 0.03, 0.02, 0.0, -0.01, -0.03, -0.05])
#: Three leaders close together: sparse relaxations keep several candidates, with gradients.
LEADERS = torch.tensor([0.100, 0.099, 0.098, 0.03, 0.02, 0.0, -0.01, -0.03])


def make(name: str, **options):
    return registry.load("relaxation", name)(**options)


def at_end(relax, epochs: int = 8, steps: int = 80):
    relax.on_epoch(epochs - 1, epochs)
    relax.on_step(steps - 1, steps)
    return relax


def seeded(fn, logits: torch.Tensor, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return fn(logits)


# --- every built-in relaxation ---------------------------------------------------------------


def test_builtins_are_registered():
    assert {"softmax", "sparsemax", "entmax15", "entmax", "gumbel", "gumbel-hard", "drnas"} <= set(
        NAMES
    )


@pytest.mark.parametrize("stage", ["start", "middle", "end"])
@pytest.mark.parametrize("name", NAMES)
def test_weights_are_on_the_simplex(name, stage):
    relax = make(name)
    if stage != "start":
        relax.on_epoch(3 if stage == "middle" else 7, 8)
        relax.on_step(40 if stage == "middle" else 79, 80)
    for logits in (torch.randn(8), torch.randn(5, 8), SEPARATED):
        for w in (relax.weights(logits), relax.eval_weights(logits)):
            assert w.shape == logits.shape
            assert torch.isfinite(w).all()
            assert (w >= 0).all()
            torch.testing.assert_close(w.sum(-1), torch.ones(logits.shape[:-1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_eval_weights_are_deterministic(name):
    relax = make(name)
    relax.on_epoch(2, 8)
    logits = torch.randn(3, 8)
    first = relax.eval_weights(logits)
    torch.rand(100)  # moves the global generator: a deterministic mapping must not care
    assert torch.equal(first, relax.eval_weights(logits))


@pytest.mark.parametrize("name", NAMES)
def test_eval_weights_rank_candidates_by_logit(name):
    relax = at_end(make(name))
    logits = torch.tensor([0.3, 2.0, -1.0, 0.1])
    assert int(relax.eval_weights(logits).argmax()) == 1


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_logits_and_are_finite(name):
    for stage in ("start", "end"):
        relax = make(name) if stage == "start" else at_end(make(name))
        logits = SEPARATED.clone().requires_grad_()
        w = seeded(relax.weights, logits)
        (w * torch.arange(8.0)).sum().backward()
        assert torch.isfinite(logits.grad).all()
        # At the end a sparse relaxation may keep a single candidate, whose weight is constant.
        if stage == "start":
            assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_restores_the_schedule(name):
    trained = make(name)
    trained.on_epoch(3, 8)
    trained.on_step(40, 80)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)  # checkpoints are plain data, read back safely
    buffer.seek(0)
    resumed = make(name)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.state_dict() == trained.state_dict()
    logits = torch.randn(4, 8)
    for relax in (trained, resumed):
        relax.on_step(41, 80)
    assert torch.equal(seeded(trained.weights, logits), seeded(resumed.weights, logits))
    assert torch.equal(trained.eval_weights(logits), resumed.eval_weights(logits))


@pytest.mark.parametrize("name", NAMES)
def test_no_penalty_by_default(name):
    assert make(name).penalty({"e": torch.zeros(8)}, "arch") is None


# --- zero-skipping is gradient-exact on the cell supernet -------------------------------------
# Every relaxation that claims skip_is_exact, a third party's too, is checked on a small supernet
# by RelaxationConformance.test_skipping_zero_weights_is_exact; these tests add the cell, whose
# candidates share computed prefixes across edges.


def _supernet_gradients(space, relax, skip_zeros: bool):
    # In float64: shared computations sum gradients in an order that depends on which ops run,
    # so float32 results agree only to rounding (about 1e-7 relative), float64 ones to 1e-15.
    torch.manual_seed(0)
    net = space.supernet(Task("classification", (3, 8, 8), 5)).double()
    net.skip_zeros = skip_zeros
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (4,))
    choices = space.choices()
    logits = {}
    for i, c in enumerate(choices):
        # Each edge favours other ops, so different ops survive on different edges.
        pattern = LEADERS[: len(c.candidates)].roll(i % len(c.candidates)).double()
        logits[c.name] = pattern.clone().requires_grad_()
    torch.manual_seed(1)
    weights = {name: relax.weights(t) for name, t in logits.items()}
    F.cross_entropy(net(x, weights), y).backward()
    # A tensor that no computed path reaches has no gradient: that is a zero gradient.
    tensors = {f"logits {name}": t for name, t in logits.items()} | dict(net.named_parameters())
    grads = {k: torch.zeros_like(t) if t.grad is None else t.grad for k, t in tensors.items()}
    return grads, weights


@pytest.mark.parametrize("name", SKIP_EXACT)
def test_skipping_zero_weights_leaves_gradients_unchanged(name):
    space = registry.load("space", "cell")(channels=4, layers=3)
    # Per choice, at its end: sparsemax's default temperature would leave these close leaders
    # one-hot (no gradient at all), so it ends where two or three of them survive.
    relax = at_end(make(name, **({"tau_end": 0.005} if name == "sparsemax" else {})))
    sparse, weights = _supernet_gradients(space, relax, skip_zeros=True)
    dense, _ = _supernet_gradients(space, relax, skip_zeros=False)
    if name in SPARSE:
        assert sum(int((w == 0).sum()) for w in weights.values()) > len(weights), "nothing skipped"
    assert any(g.abs().sum() > 0 for k, g in sparse.items() if k.startswith("logits"))
    assert sparse.keys() == dense.keys()
    for key in sparse:
        torch.testing.assert_close(sparse[key], dense[key], rtol=1e-10, atol=1e-12, msg=key)


# --- the sparse relaxations become sparse within the search ------------------------------------


@pytest.mark.parametrize("epochs", [6, 10])
@pytest.mark.parametrize("name, options", SPARSE_SETTINGS)
def test_sparse_relaxations_explore_first_and_end_with_one_or_two_candidates(name, options, epochs):
    relax = make(name, **options)
    near_equal = 1e-3 * torch.randn(14, 8)  # DARTS's initial logits
    relax.on_epoch(0, epochs)
    assert (relax.weights(near_equal) > 0).all()
    assert (relax.weights(SEPARATED) > 0).all()
    at_end(relax, epochs)
    kept = int((relax.weights(SEPARATED) > 0).sum())
    assert 1 <= kept <= 2


def test_annealed_entmax_runs_from_softmax_to_sparsemax():
    relax = make("entmax", anneal=True, tau_start=1.0, tau_end=0.05)
    logits = torch.randn(3, 8)
    relax.on_epoch(0, 4)
    assert relax.state_dict()["alpha"] == 1.0
    torch.testing.assert_close(relax.weights(logits), torch.softmax(logits, -1))
    at_end(relax, 4)
    assert relax.state_dict()["alpha"] == pytest.approx(2.0)
    sparse = make("sparsemax", tau_start=0.05, tau_end=0.05).weights(logits)
    torch.testing.assert_close(relax.weights(logits), sparse, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, options", SPARSE_SETTINGS)
def test_default_length_search_with_darts_optimiser_ends_sparse(name, options):
    """A toy DARTS architecture search: 14 edges of 8 candidates, Adam as DARTS sets it."""
    epochs, steps = 8, 80
    gen = torch.Generator().manual_seed(0)
    outputs = torch.randn(14, 8, 16, generator=gen)  # what each candidate computes
    targets = outputs[torch.arange(14), torch.randint(0, 8, (14,), generator=gen)]
    logits = (1e-3 * torch.randn(14, 8, generator=gen)).requires_grad_()
    adam = torch.optim.Adam([logits], lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    relax = make(name, **options)
    kept_per_epoch = []
    for epoch in range(epochs):
        relax.on_epoch(epoch, epochs)
        for step in range(steps):
            relax.on_step(step, steps)
            noisy = targets + 2.0 * torch.randn(targets.shape, generator=gen)
            mixed = (relax.weights(logits).unsqueeze(-1) * outputs).sum(1)
            adam.zero_grad()
            ((mixed - noisy) ** 2).mean().backward()
            adam.step()
        kept_per_epoch.append((relax.weights(logits.detach()) > 0).sum(-1).float())
    assert (kept_per_epoch[0] == 8).all(), "the first epoch keeps every candidate"
    assert kept_per_epoch[-1].max() <= 2, "the last epoch keeps at most two candidates per edge"


# --- the Gumbel relaxations --------------------------------------------------------------------


def test_gumbel_draws_a_fresh_sample_each_call():
    relax = make("gumbel")
    logits = torch.zeros(8)
    assert not torch.equal(relax.weights(logits), relax.weights(logits))
    torch.testing.assert_close(relax.eval_weights(logits), torch.full((8,), 1 / 8))


@pytest.mark.parametrize("stage", ["start", "end"])
def test_gumbel_hard_forward_is_exactly_one_hot(stage):
    relax = make("gumbel-hard") if stage == "start" else at_end(make("gumbel-hard"))
    w = relax.weights(torch.randn(500, 8, requires_grad=True))
    assert ((w == 0.0) | (w == 1.0)).all()
    assert ((w == 1.0).sum(-1) == 1).all()


def test_gumbel_hard_picks_candidates_in_proportion_to_softmax():
    relax = make("gumbel-hard")
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5])
    picks = relax.weights(logits.expand(20000, 4)).mean(0)
    torch.testing.assert_close(picks, torch.softmax(logits, -1), rtol=0, atol=0.02)
    torch.testing.assert_close(relax.eval_weights(logits), torch.softmax(logits, -1))


def test_gumbel_hard_gradient_reaches_every_logit():
    relax = make("gumbel-hard")  # tau = 10 at the start: the sample is far from saturated
    logits = torch.randn(8, requires_grad=True)
    (relax.weights(logits) * torch.arange(8.0)).sum().backward()
    assert (logits.grad != 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["gumbel", "gumbel-hard"])
def test_gumbel_is_finite_for_extreme_logits_at_low_temperature(name, dtype):
    relax = at_end(make(name))
    assert relax.state_dict()["tau"] == pytest.approx(0.1)
    extreme = torch.tensor([1e4, -1e4, 0.0, 1e4, -1e4, 3.0, -3.0, math.inf]).to(dtype)
    for logits in (extreme.expand(200, 8), (50 * torch.randn(200, 8)).to(dtype)):
        logits = logits.clone().requires_grad_()
        w = relax.weights(logits)
        (w.float() * torch.arange(8.0)).sum().backward()
        assert torch.isfinite(w).all() and torch.isfinite(logits.grad).all()
        torch.testing.assert_close(w.float().sum(-1), torch.ones(200), rtol=0, atol=1e-2)


def test_gumbel_hard_does_not_claim_exact_skipping():
    assert not registry.load("relaxation", "gumbel-hard").skip_is_exact


# --- schedules and options ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "constant"])
def test_schedule_runs_from_start_to_end_monotonically(shape):
    schedule = Schedule("tau", 10.0, 0.1, shape)
    values = [schedule.value(t / 20) for t in range(21)]
    assert values[0] == pytest.approx(10.0) and values[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # neighbours
    assert schedule.value(-1.0) == values[0] and schedule.value(2.0) == values[-1]


def test_exp_schedule_is_geometric_and_constant_stays():
    assert Schedule("tau", 1.0, 0.01, "exp").value(0.5) == pytest.approx(0.1)
    assert Schedule("tau", 2.0, 0.01, "constant").value(0.7) == 2.0


@pytest.mark.parametrize("name", ["sparsemax", "entmax15", "entmax", "gumbel", "gumbel-hard"])
def test_temperature_reaches_its_end_value_at_the_last_step(name):
    relax = make(name, tau_start=2.0, tau_end=0.02)
    relax.on_epoch(0, 5)
    relax.on_step(0, 30)
    assert relax.state_dict()["tau"] == pytest.approx(2.0)
    relax.on_epoch(2, 5)  # between epochs, progress is that of the epoch's first step
    start_of_epoch = relax.state_dict()["tau"]
    relax.on_step(0, 30)
    assert relax.state_dict()["tau"] == start_of_epoch
    at_end(relax, 5, 30)
    assert relax.state_dict()["tau"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("sparsemax", {"schedule": "cubic"}, "accepted: constant, linear, exp, cosine"),
        ("gumbel", {"schedule": "step"}, "accepted: constant, linear, exp, cosine"),
        ("entmax15", {"tau_end": 0.0}, "> 0"),
        ("gumbel-hard", {"tau_start": -1.0}, "> 0"),
        ("softmax", {"temperature": 0.0}, "> 0"),
        ("entmax", {"alpha": 0.5}, ">= 1"),
        ("entmax", {"alpha": 1.8, "anneal": True}, "not both"),
        ("softmax", {"beta": -0.5}, "beta must be a finite number >= 0"),
        ("softmax", {"beta": math.inf}, "beta must be a finite number >= 0"),
        ("drnas", {"kl": -1.0}, "kl must be a finite number >= 0"),
    ],
)
def test_bad_options_are_one_line_value_errors(name, options, message):
    with pytest.raises(ValueError, match=message) as info:
        make(name, **options)
    assert "\n" not in str(info.value)


def test_bad_clock_values_are_value_errors():
    relax = make("sparsemax")
    with pytest.raises(ValueError, match="epochs >= 1"):
        relax.on_epoch(0, 0)
    with pytest.raises(ValueError, match="steps >= 1"):
        relax.on_step(0, 0)


def test_entmax_alpha_one_is_softmax_and_two_is_sparsemax():
    logits = torch.randn(4, 8)
    constant = {"tau_start": 0.5, "tau_end": 0.5, "schedule": "constant"}
    torch.testing.assert_close(
        make("entmax", alpha=1.0, **constant).weights(logits), torch.softmax(logits / 0.5, -1)
    )
    torch.testing.assert_close(
        make("entmax", alpha=2.0, **constant).weights(logits),
        make("sparsemax", **constant).weights(logits),
        rtol=1e-4,
        atol=1e-5,
    )
    assert not math.isnan(float(make("entmax", alpha=1.0001).weights(logits).sum()))


# --- grouped choices: the cell's nodes ---------------------------------------------------------


def _grouped_gradients(space, relax, skip_zeros: bool):
    from nasplug.searchlib.logits import ArchLogits

    torch.manual_seed(0)
    net = space.supernet(Task("classification", (3, 8, 8), 5)).double()
    net.skip_zeros = skip_zeros
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 5, (4,))
    logits = ArchLogits(space.choices(), groups=space.groups()).double()
    with torch.no_grad():
        for i, p in enumerate(logits.parameters()):
            p.copy_(LEADERS[: len(p)].roll(i % len(p)).double() * (1 + 0.1 * i))
    weights = logits.weights(relax)
    F.cross_entropy(net(x, weights), y).backward()
    tensors = {f"logits {n}": t for n, t in logits.items()} | dict(net.named_parameters())
    grads = {k: torch.zeros_like(t) if t.grad is None else t.grad for k, t in tensors.items()}
    return grads, {k: w.detach() for k, w in weights.items()}


def test_skipping_is_exact_for_the_grouped_projection_on_the_cell_supernet():
    space = registry.load("space", "cell")(channels=4, layers=3)
    relax = make("sparsemax", tau_start=0.05, tau_end=0.05)
    sparse, weights = _grouped_gradients(space, relax, skip_zeros=True)
    dense, _ = _grouped_gradients(space, relax, skip_zeros=False)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    fractional = sum(int(((w > 0) & (w < 1)).sum()) for w in weights.values())
    assert zeros > 2 * len(weights) and fractional > len(space.groups()), "not mid-anneal"
    assert any(g.abs().sum() > 0 for k, g in sparse.items() if k.startswith("logits"))
    for key in sparse:
        torch.testing.assert_close(sparse[key], dense[key], rtol=1e-10, atol=1e-12, msg=key)


def test_grouped_sparsemax_anneals_then_trains_on_the_vertex_with_the_logits_frozen():
    relax = make("sparsemax", tau_end=0.005, hard=0.3)  # tau_end is reached at progress 0.7
    rows = [
        torch.tensor([0.02, 0.01, 0.0]),
        torch.tensor([0.015, -0.01, 0.0]),
        torch.tensor([0.0, 0.005, 0.001]),
    ]
    relax.on_epoch(0, 10)
    relax.on_step(0, 10)
    assert not relax.frozen() and relax.tau == 1.0
    assert all((w > 0).all() for w in relax.group_weights(rows, 2)), "dense at first"
    relax.on_epoch(6, 10)
    relax.on_step(9, 10)  # progress 69/99: just before the hard phase
    assert not relax.frozen()
    relax.on_epoch(7, 10)
    relax.on_step(0, 10)
    assert relax.frozen() and relax.tau == pytest.approx(0.005)
    hard = relax.group_weights([r.clone().requires_grad_() for r in rows], 2)
    assert [w.tolist() for w in hard] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert not any(w.requires_grad for w in hard)
    assert [w.tolist() for w in relax.eval_group_weights(rows, 2)] == [w.tolist() for w in hard]
    per_choice = make("sparsemax", grouped=False)
    assert per_choice.group_weights(rows, 2) is None and not at_end(per_choice).frozen()


def test_bad_hard_share_is_a_one_line_value_error():
    with pytest.raises(ValueError, match=r"hard must be in \[0, 1\)"):
        make("sparsemax", hard=1.0)


# --- the options the literature compares: beta-DARTS and DrNAS ---------------------------------


class TestPenalisedRelaxations(RelaxationConformance):
    """The conformance suite again, with the penalties on (the registry runs the defaults)."""

    @pytest.fixture(
        params=[("softmax", {"beta": 0.5}), ("drnas", {"kl": 1e-3}), ("drnas", {"grouped": False})]
    )
    def relaxation(self, request):
        name, options = request.param
        return tiny_instance(registry.load("relaxation", name), **options)


def _clock(relax, epoch: int, epochs: int, step: int, steps: int):
    relax.on_epoch(epoch, epochs)
    relax.on_step(step, steps)
    return relax


def test_beta_weight_grows_linearly_from_zero_to_beta_over_the_search():
    relax = make("softmax", beta=0.5)
    epochs, steps = 4, 10
    seen = []
    for epoch in range(epochs):
        for step in range(steps):
            seen.append(_clock(relax, epoch, epochs, step, steps).beta_weight)
    assert seen[0] == 0.0 and seen[-1] == pytest.approx(0.5)
    expected = [0.5 * i / (epochs * steps - 1) for i in range(epochs * steps)]
    assert seen == pytest.approx(expected)
    # Between epochs (before on_step), the weight is that of the epoch's first step.
    relax.on_epoch(2, epochs)
    assert relax.beta_weight == pytest.approx(expected[2 * steps])


def test_beta_penalty_is_the_weighted_mean_smoothmax_and_its_gradient_the_softmax():
    relax = _clock(make("softmax", temperature=0.5, beta=2.0), 1, 4, 3, 5)  # progress 8/19
    weight = 2.0 * 8 / 19
    logits = {
        "a": torch.tensor([0.3, -0.2, 0.1], requires_grad=True),
        "b": torch.tensor([1.0, 0.0, -1.0, 0.5, 0.2], requires_grad=True),
    }
    pen = relax.penalty(logits, "arch")
    expected = (
        weight
        * (
            torch.logsumexp(logits["a"].detach() / 0.5, 0)
            + torch.logsumexp(logits["b"].detach() / 0.5, 0)
        )
        / 2
    )
    torch.testing.assert_close(pen.detach(), expected)
    pen.backward()
    for t in logits.values():  # d/dz of mean smoothmax: softmax(z / T) / T, over the 2 choices
        torch.testing.assert_close(t.grad, weight * torch.softmax(t.detach() / 0.5, 0) / 0.5 / 2)
    assert relax.penalty(logits, "weight") is None, "the architecture step's penalty only"


def test_beta_schedule_survives_a_checkpoint_and_old_checkpoints_still_load():
    trained = _clock(make("softmax", beta=0.5), 2, 5, 7, 9)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    resumed = make("softmax", beta=0.5)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.beta_weight == trained.beta_weight > 0
    logits = {"e": torch.randn(8)}
    assert torch.equal(resumed.penalty(logits, "arch"), trained.penalty(logits, "arch"))
    make("softmax").load_state_dict({})  # a softmax checkpoint of earlier versions: no clock


@pytest.mark.parametrize("options", [{}, {"beta": 0.0}])
def test_softmax_without_beta_is_plain_darts(options):
    relax = make("softmax", temperature=0.7, **options)
    logits = torch.randn(5, 8)
    for clock in [(0, 4, 0, 5), (3, 4, 4, 5)]:
        _clock(relax, *clock)
        assert torch.equal(relax.weights(logits), torch.softmax(logits / 0.7, dim=-1))
        assert torch.equal(relax.eval_weights(logits), torch.softmax(logits / 0.7, dim=-1))
        assert relax.penalty({"e": logits[0]}, "arch") is None
        assert relax.penalty({"e": logits[0]}, "weight") is None


def test_a_softmax_search_is_bit_for_bit_plain_softmax_and_beta_changes_it():
    """The built-in softmax against the suites' own (a bare ``softmax(logits)``), one search each."""
    tiny = {
        "space_opts": {"channels": 4, "layers": 2, "nodes": 2},
        "data_opts": {"train_per_class": 8, "test_per_class": 4},
        "batch_size": 40,
        "device": "cpu",
        "epochs": 2,
        "quiet": True,
    }
    runs = {
        name: nasplug.search("cell", relax, "darts", **tiny)
        for name, relax in [
            ("plain", TinySoftmax()),
            ("softmax", make("softmax")),
            ("beta", make("softmax", beta=50.0)),
        ]
    }
    plain, softmax, beta = (runs[k].weights for k in ("plain", "softmax", "beta"))
    assert all(torch.equal(plain[k], softmax[k]) for k in plain)
    assert not all(torch.equal(plain[k], beta[k]) for k in plain)


def _concentrations(logits: torch.Tensor) -> torch.Tensor:
    return F.elu(logits.double()) + 1  # the paper's map, in float64 for reference


def test_drnas_evaluates_with_the_dirichlet_mean_and_samples_around_it():
    relax = make("drnas")
    logits = torch.tensor([0.8, -0.5, 0.0, 2.0, -3.0])
    c = _concentrations(logits)
    torch.testing.assert_close(relax.eval_weights(logits).double(), c / c.sum())
    samples = relax.weights(logits.expand(20000, 5))
    assert not torch.equal(samples[0], samples[1]), "a fresh sample per row and call"
    torch.testing.assert_close(samples.mean(0).double(), c / c.sum(), rtol=0, atol=0.01)
    # The spread is the Dirichlet's: var_i = m_i (1 - m_i) / (sum(c) + 1).
    m = c / c.sum()
    torch.testing.assert_close(
        samples.double().var(0), m * (1 - m) / (c.sum() + 1), rtol=0.1, atol=1e-4
    )


def test_drnas_gradient_reaches_every_logit_through_the_sample():
    relax = make("drnas")
    logits = torch.tensor([0.8, -0.5, 0.0, 2.0, -3.0], requires_grad=True)
    torch.manual_seed(3)
    (relax.weights(logits) * torch.arange(5.0)).sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad != 0).all()


def test_drnas_has_no_exact_zeros_even_for_extreme_logits():
    relax = make("drnas")
    for logits in (torch.tensor([-200.0, 0.0, 1e4, 80.0]), torch.tensor([-1e30, 1e30, 0.0])):
        for w in (relax.weights(logits), relax.eval_weights(logits)):
            assert torch.isfinite(w).all() and (w > 0).all()
            torch.testing.assert_close(w.sum(), torch.tensor(1.0))


ROWS = [  # a cell node's three incoming edges, `none` left out
    torch.tensor([0.5, 0.1, -0.2, 0.0]),
    torch.tensor([0.2, 0.3, 0.0, -0.1]),
    torch.tensor([-0.4, 0.0, 0.1, 0.2]),
]


@pytest.mark.parametrize("k", [1, 2])
def test_drnas_group_carries_exactly_k_with_every_edge_at_most_one(k):
    relax = make("drnas")
    rows = [r.clone().requires_grad_() for r in ROWS]
    for seed in range(20):
        torch.manual_seed(seed)
        ws = relax.group_weights(rows, k)
        assert all(float(w.detach().sum()) <= 1 + 1e-6 and (w > 0).all() for w in ws)
        torch.testing.assert_close(sum(w.sum() for w in ws), torch.tensor(float(k)))
    (sum((w * torch.arange(4.0)).sum() for w in ws)).backward()
    assert all((r.grad != 0).any() for r in rows), "the gradient reaches every member"
    # The mean's members share the k units as the sums of their concentrations (none capped).
    mean = relax.eval_group_weights(ROWS, k)
    sums = torch.stack([_concentrations(r).sum() for r in ROWS])
    torch.testing.assert_close(torch.stack([w.sum() for w in mean]).double(), k * sums / sums.sum())
    for w, r in zip(mean, ROWS, strict=True):  # within a member: the Dirichlet mean
        torch.testing.assert_close(
            w.double() / w.sum(), _concentrations(r) / _concentrations(r).sum()
        )


def test_drnas_group_caps_a_dominant_edge_at_one_and_spreads_the_rest():
    relax = make("drnas")
    rows = [ROWS[0] + 5.0, ROWS[1], ROWS[2]]  # edge 0 holds far more than half the concentration
    mean = relax.eval_group_weights(rows, 2)
    mass = torch.stack([w.sum() for w in mean]).double()
    sums = torch.stack([_concentrations(r).sum() for r in rows])
    torch.testing.assert_close(mass[0], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(mass[1:], sums[1:] / sums[1:].sum())  # the other unit, shared
    per_choice = make("drnas", grouped=False)
    assert per_choice.group_weights(rows, 2) is None
    assert per_choice.eval_group_weights(rows, 2) is None


def test_drnas_kl_penalty_pulls_the_concentrations_to_the_uniform_prior():
    assert make("drnas").penalty({"e": torch.randn(8)}, "arch") is None
    relax = make("drnas", kl=0.01)
    at_prior = {"e": torch.zeros(8)}  # elu(0) + 1 = 1: the prior itself
    assert float(relax.penalty(at_prior, "arch")) == pytest.approx(0.0, abs=1e-6)
    logits = {"a": torch.tensor([1.5, 0.0, -0.5], requires_grad=True), "b": torch.zeros(4)}
    pen = relax.penalty(logits, "arch")
    assert float(pen.detach()) > 0 and relax.penalty(logits, "weight") is None
    pen.backward()
    grad = logits["a"].grad
    assert grad[0] > 0 and grad[2] < 0, "a descent step moves the logits towards 0"


@pytest.mark.parametrize(
    "space",
    [
        ["--space", "cell", "--space-opt", "channels=4", "--space-opt", "nodes=2"],
        ["--space", "dense", "--space-opt", "blocks=3", "--space-opt", "width=8"],
    ],
)
def test_a_tiny_drnas_search_completes(space, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "run",
        *space,
        "--space-opt",
        "layers=2",
        "--relax",
        "drnas",
        "--relax-opt",
        "kl=0.001",
        "--data-opt",
        "train_per_class=8",
        "--data-opt",
        "test_per_class=4",
        "--batch-size",
        "40",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "genotype:" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0
