"""The built-in update strategies: SPSA with Adam steps, CMA-ES, Optuna TPE and random search.

All work in the unit cube of the loop's tuned space and score parameters with ``loop.evaluate`` (the
last chunk re-processed from the pipeline state before it), so trying a setting never disturbs the
live stream; the loop's safety checks then move the live parameters (see ``FeedbackLoopSystem``).
By default every strategy spends 16 evaluations per update, so that they compare at equal cost:

* ``gradient`` (SPSA, Spall 1992, on a factorial design): each update scores ``R(x + c D_k)`` at the ``n``
  rows ``D_k`` in {-1, +1}^d of one Hadamard matrix (order ``n``, the power of two above ``d``: 16 for the
  default 11 parameters; its all-ones column dropped, ``d`` of the others taken in random order with random
  signs, rows in random order; scipy's Sylvester matrices), all on the last chunk (common random numbers),
  and estimates ``g = sum_k (R_k - mean R) D_k / (n c)``. The columns are balanced and pairwise orthogonal,
  so within the update each coordinate's estimate is free of the others' slopes and of every coordinate's
  curvature (the first-order two-level design of response-surface methodology: Box & Wilson 1951, Plackett
  & Burman 1946); what is left is some two-parameter interactions (``c`` times a mixed second derivative,
  for the pairs of columns whose product is the column's: a resolution-III design), whose sign the random
  columns and signs change from update to update. ``design="hadamard"`` (the default before) spends the
  same 16 evaluations on 8 two-sided pairs ``(R(x + c D) - R(x - c D)) / (2c) * D`` from the rows of such
  matrices, half a matrix per update: the cross-talk between coordinates (each estimate picks up the
  others' slopes times the product of their signs) cancels only over the next update, on another chunk
  (deterministic perturbations after Bhatnagar, Fu, Marcus & Wang 2003); ``design="rademacher"``, Spall's
  independent random signs, leaves it with a variance of about ``|grad|^2 / pairs`` per coordinate. Train
  clips at >= 90 % of the oracle after 100 updates (``benchmarks/feedback_loop.py --ablation
  --ablation-seeds 0 1 2 --ablation-rows gradient_hadamard``): 15 / 16 / 15 of 19 on seeds 0 / 1 / 2 against
  13 / 16 / 14 with Hadamard pairs, at >= 95 %: 14 / 13 / 10 against 10 / 11 / 9, the median clip at 0.96 /
  0.98 / 0.96 against 0.96 / 0.96 / 0.95; 30 updates after a noise change (``--adaptation-seeds
  --adaptation-rows default hadamard``, the 8 non-stationary clips on seeds 0-2): 8 of the 24 runs back at
  >= 90 % of the new oracle against 10, but 0.83 of it on average against 0.79, and 0.54 at worst against
  0.28. Earlier, Hadamard pairs against random signs (``--ablation-seeds 0 1 2 3 4``, earlier code):
  15 / 16 / 16 / 16 / 14 of 19 against 15 / 15 / 12 / 14 / 16 at >= 90 %, 12 on every seed against
  10 / 8 / 6 / 6 / 9 at >= 95 %. Those figures are for probes of half-width ``c = 0.2``; the default is now
  0.125 (smaller probes alias less of the two-parameter interactions into the slopes). On the train clips the
  sizes from 0.1 to 0.15 are within the seeds' spread (``--ablation --ablation-seeds 0 1 2 --ablation-rows
  gradient_c0.2 gradient_c0.15 gradient_c0.1``): clips at >= 90 % 16 / 17 / 16 of 19 on seeds 0-2 against
  16 / 17 / 15 with 0.15, 16 / 17 / 15 with 0.1 and 15 / 16 / 15 with 0.2; at >= 95 % 13 / 15 / 12 against
  13 / 15 / 13, 14 / 14 / 14 and 14 / 13 / 10; the median clip 0.98 / 0.98 / 0.98 against 0.97 / 0.97 / 0.97,
  0.97 / 0.98 / 0.97 and 0.96 / 0.98 / 0.96. The harness (below) separates them. When the loop dismisses an
  alarm as a change of the input, the gain schedule and the moments restart from the iterate
  (:meth:`GradientStrategy.on_input_change`). 30 updates after a noise change (``--adaptation-seeds
  --adaptation-rows default no_restart c0.15 c0.2``, 24 runs): 10 back at >= 90 % of the new oracle, 0.88 of it
  on average and 0.72 at worst, against 9, 0.84 and 0.55 without the restart, 10, 0.87 and 0.63 with probes of
  0.15, and 8, 0.86 and 0.70 with 0.2. Adam moments (Kingma & Ba 2015) turn ``g`` into a step of about
  ``learning_rate`` per coordinate while its sign is consistent, less when noisy. Gains:
  ``c_k = c / (k + 1)^0.101`` and ``a_k = learning_rate / (1 + k / A)^0.602`` (Spall's exponents), floored
  at ``min_rate * learning_rate`` so the loop keeps tracking a changing input. Without the decay
  (``min_rate=1``) it re-adapts faster and converges less closely: 30 updates after a noise change 13 of the 24
  runs are back at >= 90 % of the new oracle against 10, the median run within 30 updates against 35
  (``--adaptation-seeds --adaptation-rows default no_decay``), but on the train clips 14 / 17 / 15 of 19 reach
  90 % of the oracle on seeds 0-2 against 16 / 17 / 16, the median clip 0.96 against 0.98 (``--ablation
  --ablation-seeds 0 1 2 --ablation-rows gradient_no_decay``). One pair learns markedly worse
  (``benchmarks/feedback_loop.py --ablation``).
  The search walks its own iterate; the live parameters follow an exponential average of it (weight
  ``average`` on the past), so the stream hears the search's trend rather than its step-to-step noise
  (the averaging of what is played, after Polyak & Juditsky 1992). With random-sign probes it learned
  better (train clips at 90 % of the oracle 15 / 15 / 12 of 19 on seeds 0-2 against 14 / 14 / 12 with
  the live parameters on the iterate, at stop 16); with Hadamard pairs as well as the iterate (15 / 16 /
  16 against 15 / 16 / 17, ``--ablation``, earlier code), and it is kept for the smoother path the stream
  plays. ``spsa`` in ``python -m scenarios.evaluate builtin --split test --budget 100 --strategy spsa
  --strategy oracle [--seed S]``: 95.6 / 95.2 / 95.0 (94.997) % of the oracle's improvement on seeds 0 / 1 / 2 (median
  over the test clips, the stream's own rewards) against 94 / 95.5 / 94.6 % with probes of 0.15 (``--strategy
  spsa:perturbation=0.15`` in the same run; 93 % with probes of 0.2 on seed 0, 94 % with Hadamard pairs and 90 %
  with random signs, both with probes of 0.2), mean SI-SDR 13.34 dB against the oracle's 13.25 on seed 0, PESQ
  1.83 against 1.80.
* ``cma``, ``bayesian`` (Optuna TPE), ``random``: 15 candidates per update, each scored by its paired
  gain over a fixed reference (the parameters the strategy started from, evaluated once per update on
  the same chunk), which removes the chunk-to-chunk difference in difficulty; the live parameters
  follow the search's incumbent (CMA's mean; the best-scored candidate for TPE and random search).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.linalg import hadamard

from feedback_env.feedback_loop.strategies import Proposal

if TYPE_CHECKING:  # pragma: no cover
    from feedback_env.feedback_loop.records import FeedbackRecord
    from feedback_env.feedback_loop.system import FeedbackLoopSystem


def _unit(loop: "FeedbackLoopSystem") -> np.ndarray:
    params = loop.parameters
    return loop.space.to_unit({n: params[n] for n in loop.space.names}, dtype=np.float64)


def _moved_by_others(strategy, loop: "FeedbackLoopSystem", live: np.ndarray, started_at: np.ndarray | None) -> bool:
    """Are the live parameters (unit cube) neither where ``strategy``'s update left them (if the loop's last
    update was its) nor where it (re)started (``started_at``; None: not known)? Then a rollback, another
    strategy or ``set_parameters`` moved them."""
    last = loop.updates[-1] if loop.updates else None
    if last is not None and loop.strategies.get(last.strategy) is strategy:
        left = loop.space.to_unit({n: last.new_params[n] for n in loop.space.names}, dtype=np.float64)
        if np.allclose(left, live, rtol=0.0, atol=1e-9):
            return False
    return started_at is None or not np.allclose(started_at, live, rtol=0.0, atol=1e-9)


def _largest_moves(loop: "FeedbackLoopSystem", x_old: np.ndarray, x_new: np.ndarray, k: int = 3) -> str:
    old, new = loop.space.from_unit(x_old), loop.space.from_unit(x_new)
    order = np.argsort(-np.abs(x_new - x_old))[:k]
    names = loop.space.names
    return ", ".join(f"{names[i]} {old[names[i]]:.4g}->{new[names[i]]:.4g}" for i in order if x_new[i] != x_old[i])


class GradientStrategy:
    """SPSA gradient ascent on the reward with Adam steps (``gradient``; see the module docstring).

    :param loop: the feedback loop (its ``learning_rate`` is the Adam step, unit-cube units).
    :param perturbation: ``c``, half-width of the probes in unit-cube units.
    :param pairs: two-sided probe pairs averaged per update (Spall's gradient averaging), all on the last
        chunk, for the two-sided designs (default 8: 16 evaluations); giving it without ``design`` selects
        ``"hadamard"``.
    :param decay: ``A``: updates over which the step size falls by ``2^0.602``.
    :param min_rate: floor of the step-size schedule, as a fraction of ``learning_rate``.
    :param beta1: Adam's first-moment decay. :param beta2: Adam's second-moment decay.
    :param average: weight of the past in the live parameters' exponential average of the iterate (0: the
        live parameters are the iterate). The iterate restarts from the live parameters whenever
        something else moved them (a rollback, another strategy, ``set_parameters``).
    :param design: the probes (see the module docstring): ``"factorial"`` (the default: one-sided, all
        ``n`` rows of one randomized Hadamard matrix per update, ``n`` evaluations: 16 for 8 to 15
        parameters), ``"hadamard"`` (two-sided pairs from randomized Hadamard matrices) or
        ``"rademacher"`` (two-sided pairs of independent random signs, Spall's original).
    :param restart_on_input_change: when the loop dismisses a rollback alarm as a change of the input, restart the
        gain schedule and the moments from the iterate (:meth:`on_input_change`).
    """

    name = "gradient"
    DESIGNS = ("factorial", "hadamard", "rademacher")

    def __init__(
        self,
        loop: "FeedbackLoopSystem",
        perturbation: float = 0.125,
        pairs: int | None = None,
        decay: float = 30.0,
        min_rate: float = 0.25,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        average: float = 0.8,
        design: str | None = None,
        restart_on_input_change: bool = True,
    ):
        if design is None:
            design = "factorial" if pairs is None else "hadamard"
        if design not in self.DESIGNS:
            raise ValueError(f"gradient strategy: design must be one of {self.DESIGNS}, got {design!r}")
        if design == "factorial" and pairs is not None:
            raise ValueError(f"gradient strategy: pairs ({pairs}) is for the two-sided designs; the factorial design "
                             "scores the rows of one Hadamard matrix per update")
        pairs = 8 if pairs is None else pairs
        if not (0 < perturbation <= 1 and int(pairs) >= 1 and decay > 0 and 0 <= min_rate <= 1
                and 0 <= beta1 < 1 and 0 <= beta2 < 1 and 0 <= average < 1):  # fmt: skip
            raise ValueError(
                f"gradient strategy: need 0 < perturbation <= 1, pairs >= 1, decay > 0, 0 <= min_rate <= 1, betas and "
                f"average in [0, 1); got {perturbation}, {pairs}, {decay}, {min_rate}, {beta1}, {beta2}, {average}"
            )
        self.perturbation = float(perturbation)
        self.pairs = None if design == "factorial" else int(pairs)  # the factorial design scores whole matrices
        self.decay, self.min_rate = float(decay), float(min_rate)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.average = float(average)
        self.design = design
        self.restart_on_input_change = bool(restart_on_input_change)
        self.reset(loop.space.dim)

    def reset(self, dim: int) -> None:
        """Forget the moments and the iterate, and restart the gain schedule."""
        self.m = np.zeros(dim)
        self.v = np.zeros(dim)
        self.k = 0
        self.iterate: np.ndarray | None = None  # unit cube; None: start from the live parameters
        self.pending: list[np.ndarray] = []  # the current Hadamard matrix's rows not yet probed

    def _matrix(self, loop: "FeedbackLoopSystem", dim: int) -> np.ndarray:
        """A randomized Hadamard matrix ``(n, dim)``: ``dim`` of the non-constant columns of the Sylvester matrix of
        order ``n`` (the power of two above ``dim``) in random order with random signs, rows in random order.
        Every column sums to 0 and any two are orthogonal."""
        order = 1 << dim.bit_length()  # the power of two above dim: room for dim columns besides the all-ones one
        columns = hadamard(order)[:, 1 + loop.rng.permutation(order - 1)[:dim]]
        rows = columns * loop.rng.choice([-1.0, 1.0], size=dim)
        return rows[loop.rng.permutation(order)]

    def _direction(self, loop: "FeedbackLoopSystem", dim: int) -> np.ndarray:
        """The next probe direction ``D`` in {-1, +1}^dim of a two-sided design."""
        if self.design == "rademacher":
            return loop.rng.choice([-1.0, 1.0], size=dim)
        if not self.pending:
            self.pending = list(self._matrix(loop, dim))
        return self.pending.pop()

    def _estimate(self, loop: "FeedbackLoopSystem", center: np.ndarray, c: float) -> tuple[np.ndarray, str]:
        """The gradient estimate at ``center`` (probes of half-width ``c``) and a description of its probes."""
        if self.design == "factorial":
            rows = self._matrix(loop, center.size)
            rewards = np.asarray(loop.evaluate_many([loop.space.from_unit(center + c * row) for row in rows]))
            g = rows.T @ (rewards - rewards.mean()) / (len(rows) * c)
            spread = f"rewards {rewards.mean():+.3f} +- {rewards.std():.3f}"
            return g, f"one-sided factorial design of {len(rows)} probes +{c:.3f} (unit cube) on the last chunk, {spread}"
        deltas = [self._direction(loop, center.size) for _ in range(self.pairs)]
        probes = [loop.space.from_unit(center + sign * c * delta) for delta in deltas for sign in (1.0, -1.0)]
        rewards = loop.evaluate_many(probes)  # in up to ``loop``'s workers processes at once
        g = np.zeros_like(center)
        for k, delta in enumerate(deltas):  # summed in this order: the trajectories of earlier versions, bit for bit
            g += (rewards[2 * k] - rewards[2 * k + 1]) / (2.0 * c) * delta / self.pairs
        differences = np.subtract(rewards[0::2], rewards[1::2])
        spread = f"reward differences {differences.mean():+.3f} +- {differences.std():.3f}"
        return g, f"{self.pairs} probe pair(s) +-{c:.3f} (unit cube) on the last chunk, {spread}"

    def step_size(self) -> float:
        """``a_k`` for the coming update, as a fraction of ``loop.learning_rate``."""
        return max(self.min_rate, (1.0 + self.k / self.decay) ** -0.602)

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        live = _unit(loop)
        if self.m.shape != live.shape:
            self.reset(live.size)
        if self.iterate is None or _moved_by_others(self, loop, live, None):
            self.iterate = live.copy()
        x = self.iterate
        c = self.perturbation / (self.k + 1) ** 0.101
        center = np.clip(x, -1.0 + c, 1.0 - c)  # both probes inside the cube
        g, probed = self._estimate(loop, center, c)
        self.k += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * g
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * g * g
        m_hat = self.m / (1.0 - self.beta1**self.k)
        v_hat = self.v / (1.0 - self.beta2**self.k)
        rate = loop.learning_rate * self.step_size()
        self.iterate = np.clip(x + rate * m_hat / (np.sqrt(v_hat) + self.eps), -1.0, 1.0)
        x_new = self.average * live + (1.0 - self.average) * self.iterate
        consistency = np.abs(m_hat) / (np.sqrt(v_hat) + self.eps)  # 1 = the same sign every time
        confidence = float(np.mean(consistency))
        expected = float(g @ (x_new - live))
        explanation = (
            f"SPSA on {loop.reward_description}: {probed}, gradient norm {np.linalg.norm(g):.3f}; Adam step "
            f"{rate:.3f}, sign consistency {confidence:.2f}; live parameters {1.0 - self.average:.2f} of the way to the iterate; first-order expected gain {expected:+.4f}; moves: "
            f"{_largest_moves(loop, live, x_new) or 'none'}"
        )
        return Proposal(
            loop.space.from_unit(x_new),
            explanation,
            {"expected_gain": expected, "gradient_norm": float(np.linalg.norm(g)), "confidence": confidence,
             "perturbation": c, "step_size": rate},
            gradient=g.copy(),  # the estimate at ``center`` (Adam's m_hat averages past iterates' gradients)
            gradient_at=center.copy(),
        )  # fmt: skip

    def observe(self, loop: "FeedbackLoopSystem", record: "FeedbackRecord") -> None:
        """SPSA learns from its own probes; the live records add nothing."""

    def on_rollback(self, loop: "FeedbackLoopSystem") -> None:
        self.reset(loop.space.dim)

    def on_input_change(self, loop: "FeedbackLoopSystem") -> None:
        """The input changed (a dismissed alarm): restart the gain schedule and the moments from the iterate, so
        the search re-adapts with full steps instead of the decayed ones (the old gradient no longer holds)."""
        if not self.restart_on_input_change:
            return
        self.m = np.zeros_like(self.m)
        self.v = np.zeros_like(self.v)
        self.k = 0

    def state_dict(self) -> dict[str, Any]:
        iterate = None if self.iterate is None else self.iterate.tolist()
        pending = [row.tolist() for row in self.pending]
        return {"m": self.m.tolist(), "v": self.v.tolist(), "k": self.k, "iterate": iterate, "pending": pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = np.asarray(state["m"], dtype=np.float64)
        self.v = np.asarray(state["v"], dtype=np.float64)
        self.k = int(state["k"])
        iterate = state.get("iterate")  # absent in files saved before the averaging
        self.iterate = None if iterate is None else np.asarray(iterate, dtype=np.float64)
        self.pending = [np.asarray(row, dtype=np.float64) for row in state.get("pending", [])]  # absent before the designs


class _PairedSearch:
    """Candidates scored by their gain over a fixed reference on the same chunk; the live parameters
    follow the incumbent. Each update spends ``candidates + 1`` evaluations (the reference once). The search
    starts again from the live parameters when something else moved them (a rollback, another strategy,
    ``set_parameters``): its incumbent was measured against another reference and would pull them back untested.

    Subclasses provide ``_ask() -> x``, ``_tell(x, gain)`` and ``_incumbent() -> (x, detail, confidence)``.
    """

    name = "search"
    label = "search"

    def __init__(self, loop: "FeedbackLoopSystem", candidates: int = 15):
        if int(candidates) < 1:
            raise ValueError(f"{self.name}: candidates per update must be at least 1, got {candidates}")
        self.candidates = int(candidates)
        self.start(loop)

    def start(self, loop: "FeedbackLoopSystem") -> None:
        """Begin the search at the live parameters: they are the reference and the first incumbent."""
        self.reference = {n: loop.parameters[n] for n in loop.space.names}
        self.evaluated = 0
        self.best_gain = 0.0
        self.best_x = _unit(loop)

    def observe(self, loop: "FeedbackLoopSystem", record: "FeedbackRecord") -> None:
        """The search learns from its own paired evaluations; the live records add nothing."""

    def on_rollback(self, loop: "FeedbackLoopSystem") -> None:
        """Start again from the restored parameters: the incumbent had led to the setting rolled back from
        (kept, the search walks straight back to it)."""
        self.start(loop)

    def state_dict(self) -> dict[str, Any]:
        """The search so far (JSON-serializable): reference, incumbent, and the subclass's own state."""
        return {"reference": dict(self.reference), "evaluated": self.evaluated, "best_gain": self.best_gain,
                "best_x": self.best_x.tolist(), **self._search_state()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reference = {str(n): float(v) for n, v in state["reference"].items()}
        self.evaluated = int(state["evaluated"])
        self.best_gain = float(state["best_gain"])
        self.best_x = np.asarray(state["best_x"], dtype=np.float64)
        self._load_search_state(state)

    def _search_state(self) -> dict[str, Any]:
        """What the subclass needs beyond the incumbent to go on (nothing for random search)."""
        return {}

    def _load_search_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_search_state` (after :meth:`start` made a fresh search)."""

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal:
        x_old = _unit(loop)
        started_at = loop.space.to_unit(self.reference, dtype=np.float64)
        if _moved_by_others(self, loop, x_old, started_at):  # its incumbent was measured elsewhere: start from here
            self.start(loop)
        reference = loop.evaluate(self.reference)
        gains = []
        for _ in range(self.candidates):
            x = self._ask(loop)
            gain = float(loop.evaluate(loop.space.from_unit(x)) - reference)
            self.evaluated += 1
            self._tell(x, gain)
            if gain > self.best_gain:
                self.best_gain, self.best_x = gain, x
            gains.append(gain)
        x_new, detail, confidence = self._incumbent()
        explanation = (
            f"{self.label} on {loop.reward_description}: {len(gains)} candidate(s) scored {max(gains):+.3f} at best "
            f"over the starting parameters on the last chunk ({self.evaluated} so far, best gain {self.best_gain:+.3f}); "
            f"{detail}; moves: {_largest_moves(loop, x_old, x_new) or 'none'}"
        )
        return Proposal(
            loop.space.from_unit(x_new),
            explanation,
            {"expected_gain": float(self.best_gain), "candidate_gain": max(gains), "confidence": float(confidence),
             "evaluations": float(self.evaluated)},
        )  # fmt: skip

    def _incumbent(self) -> tuple[np.ndarray, str, float]:
        confidence = 1.0 - math.exp(-self.evaluated / 50.0)
        return self.best_x, f"live parameters follow the best of {self.evaluated} candidates", confidence


class CMAStrategy(_PairedSearch):
    """CMA-ES (``cma`` package, ask/tell) on the paired gain; the live parameters follow its mean.

    :param sigma0: initial step size, unit-cube units. :param popsize: population (cma's default if None).
    """

    name = "cma"
    label = "CMA-ES"

    def __init__(self, loop: "FeedbackLoopSystem", candidates: int = 15, sigma0: float = 0.3, popsize: int | None = None):
        import cma

        self.sigma0, self.popsize = float(sigma0), popsize
        super().__init__(loop, candidates)

    def start(self, loop: "FeedbackLoopSystem") -> None:
        """A new CMA-ES run centred on the live parameters."""
        super().start(loop)
        self._seed = int(loop.rng.integers(1, 2**31 - 1))
        self._new_run(_unit(loop), self.sigma0)

    def _new_run(self, mean: np.ndarray, sigma: float) -> None:
        import cma

        options = {"bounds": [-1.0, 1.0], "seed": self._seed, "verbose": -9}
        if self.popsize:
            options["popsize"] = int(self.popsize)
        self.es = cma.CMAEvolutionStrategy(mean, sigma, options)
        self._pending: list[np.ndarray] = []
        self._scored: list[tuple[np.ndarray, float]] = []

    def _centre(self) -> np.ndarray:
        """Where CMA-ES samples around, in the cube: its mean mapped through its bound transform (``cma`` keeps
        the mean itself unbounded; clipping it can land a cube's width away from the candidates' centre)."""
        return np.asarray(self.es.result.xfavorite, dtype=np.float64)

    def _search_state(self) -> dict[str, Any]:
        return {"mean": self._centre().tolist(), "sigma": float(self.es.sigma), "seed": self._seed}

    def _load_search_state(self, state: dict[str, Any]) -> None:
        """A CMA-ES run centred where the saved one sampled, with its step size; its covariance and evolution
        paths are not saved (``cma`` keeps them in private attributes), so they start afresh and the partial
        generation is lost."""
        self._seed = int(state["seed"])
        self._new_run(np.asarray(state["mean"], dtype=np.float64), float(state["sigma"]))

    def _ask(self, loop) -> np.ndarray:
        if not self._pending:
            self._pending = [np.asarray(c, dtype=np.float64) for c in self.es.ask()]
        return self._pending.pop(0)

    def _tell(self, x: np.ndarray, gain: float) -> None:
        self._scored.append((x, gain))
        if len(self._scored) == self.es.popsize:
            self.es.tell([c for c, _ in self._scored], [-g for _, g in self._scored])
            self._scored = []

    def _incumbent(self) -> tuple[np.ndarray, str, float]:
        sigma = float(self.es.sigma)
        detail = f"generation {self.es.countiter}, sigma {sigma:.3f}, live parameters follow the distribution mean"
        return self._centre(), detail, 1.0 - min(1.0, sigma / self.sigma0)


class BayesianStrategy(_PairedSearch):
    """Optuna's TPE sampler (ask/tell) on the paired gain; the live parameters follow the best trial.

    :param max_trials: the study keeps between ``max_trials`` and twice as many of the latest trials: at
        twice, a new study takes over the latest ``max_trials``, so an update's time stops growing with the
        run (TPE's ask time grows with the trials it holds: over 400 updates of 15 candidates, 11 parameters,
        the median update took 0.47-0.66 s per 50-update block from update 150 on with the default window,
        against 0.60 s rising to 1.33 s without one; ``benchmarks/feedback_loop.py --skip latency memory
        convergence --tpe-window``). The default, 100 updates' worth, leaves a 100-iteration run untouched.
        The incumbent is kept whatever goes.
    :param sampler_options: keyword arguments of ``optuna.samplers.TPESampler`` (all its defaults otherwise).
    """

    name = "bayesian"
    label = "Optuna TPE"

    def __init__(self, loop: "FeedbackLoopSystem", candidates: int = 15, max_trials: int = 1500, **sampler_options: Any):
        startup = int(sampler_options.get("n_startup_trials", 10))  # TPESampler's default
        if int(max_trials) < max(1, startup):
            raise ValueError(f"{self.name}: max_trials ({max_trials}) must be at least 1 and TPE's n_startup_trials "
                             f"({startup}): a smaller window never leaves TPE's random start-up phase")  # fmt: skip
        self.max_trials = int(max_trials)
        self.sampler_options = sampler_options
        super().__init__(loop, candidates)

    def start(self, loop: "FeedbackLoopSystem") -> None:
        """A new study whose first trial is the live parameters."""
        import optuna

        super().start(loop)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.names = loop.space.names
        self.distributions = {n: optuna.distributions.FloatDistribution(-1.0, 1.0) for n in self.names}
        self._seed = int(loop.rng.integers(0, 2**31 - 1))
        self._new_study([])
        self.study.enqueue_trial({n: float(v) for n, v in zip(self.names, _unit(loop))})
        self._trial = None

    def _new_study(self, trials: list) -> None:
        """A study holding ``trials`` (frozen), its sampler seeded from the strategy's seed and the count of
        evaluations so far."""
        import optuna

        sampler = optuna.samplers.TPESampler(seed=(self._seed + self.evaluated) % 2**31, **self.sampler_options)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.study.add_trials(trials)
        self._held = len(trials)

    def _ask(self, loop) -> np.ndarray:
        self._trial = self.study.ask(self.distributions)
        return np.array([self._trial.params[n] for n in self.names])

    def _tell(self, x: np.ndarray, gain: float) -> None:
        self.study.tell(self._trial, gain)
        self._held += 1
        if self._held >= 2 * self.max_trials:
            self._new_study(self.study.get_trials(deepcopy=False)[-self.max_trials :])

    def _search_state(self) -> dict[str, Any]:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))  # not the queued first one
        return {"seed": self._seed, "trials": [[t.params[n] for n in self.names] + [t.value] for t in trials]}

    def _load_search_state(self, state: dict[str, Any]) -> None:
        """A study with the saved trials; TPE's random stream is seeded anew (from the seed and the count)."""
        import optuna

        self._seed = int(state["seed"])
        if state["trials"]:  # else the fresh study keeps its queued first trial (the live parameters)
            self._new_study([
                optuna.trial.create_trial(params=dict(zip(self.names, map(float, row[:-1]))),
                                          distributions=self.distributions, value=float(row[-1]))
                for row in state["trials"]
            ])  # fmt: skip


class RandomSearchStrategy(_PairedSearch):
    """Uniform random candidates in the unit cube; the live parameters follow the best-scored one."""

    name = "random"
    label = "random search"

    def _ask(self, loop) -> np.ndarray:
        return loop.rng.uniform(-1.0, 1.0, size=loop.space.dim)

    def _tell(self, x: np.ndarray, gain: float) -> None:
        """Random search keeps only the best (in ``propose``)."""
