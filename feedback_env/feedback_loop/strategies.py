"""The strategy registry: how update strategies plug into :class:`FeedbackLoopSystem`.

Contract (other packages register strategies through exactly this)::

    @dataclass
    class Proposal:
        params: dict[str, float]     # physical values, full or partial (merged into the current ones)
        explanation: str             # words and numbers: which objective, what estimate, how confident
        estimate: dict[str, float]   # e.g. {"expected_gain": .., "gradient_norm": .., "confidence": ..}
        gradient: np.ndarray | None = None   # optional: reward gradient, unit cube (convergence analysis)
        gradient_at: np.ndarray | None = None  # where it was estimated, unit cube (None: the live parameters)

    class UpdateStrategy(Protocol):
        name: str
        def propose(self, loop) -> Proposal: ...
        def observe(self, loop, record) -> None: ...   # after each usable collected record

    register_strategy(name, factory)   # factory(loop) -> UpdateStrategy

``loop.update_parameters(strategy=name)`` creates the strategy once per loop (``factory(loop)``, or
``factory(loop, **options)`` with ``FeedbackLoopSystem(strategy_options={name: {...}})``), keeps it,
and on every update calls ``propose``; the loop then applies its safety checks (bounds, NaN guard,
trust region, oscillation damping) and returns an :class:`UpdateRecord`. ``observe`` is called with
every record usable for learning (``record.ok``; failed records are never shown to strategies).
A strategy that switches between whole settings rather than walking (a bandit over presets, a policy
setting absolute parameters) sets ``step_limits = False``: its proposals then pass only the NaN guard
and the bounds, not the trust region or oscillation damping. An optional ``on_rollback(loop)`` method
is called after a rollback (e.g. to reset momentum), an optional ``on_input_change(loop)`` when the loop
dismisses a rollback alarm because the input changed (the quality fell with the input, not the parameters:
e.g. to take full steps again), and
optional ``state_dict() -> dict`` / ``load_state_dict(dict)`` (JSON-serializable) let ``loop.save``
and ``FeedbackLoopSystem.load`` carry the strategy's state across a restart.

Services a strategy may use on the loop:

* ``loop.parameters``: the current full physical parameters (dict); ``loop.space``: the tuned
  :class:`~feedback_env.parameters.ParameterSpace` (propose only those names; the rest stay fixed);
* ``loop.history``: the :class:`ProcessingHistory`; ``loop.last_record``: the latest
  :class:`FeedbackRecord` (``.reward``, ``.metrics``, ``.features``, ``.params``);
* ``loop.observation()``: float32 vector with exactly the layout of the
  ``feedback_env/AudioEnhancement*-v0`` envs configured with ``tuned=loop.space.names`` (a policy
  trained on the envs' default, all 19 parameters, needs ``FeedbackLoopSystem(tuned=None)``): the
  features of the chunk about to be processed, the tuned parameters, the last chunk's feedback;
* ``loop.evaluate(params) -> float``: the reward ``params`` would have got on the last collected
  chunk, re-processed from a snapshot of the pipeline state taken before that chunk (by default one
  chunk earlier, that chunk re-processed first with ``params`` as a warm-up; the live stream is not
  disturbed; for 0.5 s chunks about a sixteenth of ``benchmarks/feedback_loop.py``'s
  ``update_parameters["gradient_0.5s"]`` p50, an update being 16 calls: 95.7 ms, 6.0 ms per call, on a
  shared 2-core machine at load 3.2-3.7); ``loop.evaluations`` counts the calls;
* ``loop.rng``: the loop's seeded :class:`numpy.random.Generator`;
* ``loop.reward_description``: which objective the rewards measure, for explanations.

Built-in names: ``gradient`` (alias ``spsa``), ``cma``, ``bayesian`` (alias ``optuna``), ``random``,
``offline``; ``bandit`` (:class:`bandits.feedback_strategy.BanditStrategy`: a bandit picks a preset
per update; options ``policy`` (a name such as ``"ucb1"``, ``"thompson"``, ``"linucb"``, or a policy),
``presets``, ``seed``) and ``policy`` (:class:`agents.strategy.PolicyStrategy`: a trained SB3 TD3
policy; options ``model`` (the ``.zip`` written by ``train.py``, required), ``learn``, ...), whose
packages are imported when first used.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from feedback_env.feedback_loop.records import FeedbackRecord
    from feedback_env.feedback_loop.system import FeedbackLoopSystem


@dataclass
class Proposal:
    """What a strategy proposes: parameters, and why.

    :param params: physical values, full or partial (merged into the current ones).
    :param explanation: words and numbers: which objective, what estimate, how confident.
    :param estimate: the numbers behind it, e.g. ``expected_gain``, ``gradient_norm``, ``confidence``.
    :param gradient: optional reward gradient estimate, unit cube ``(d,)`` (feeds the loop's
        :class:`ConvergenceAnalyzer` curvature estimate).
    :param gradient_at: the point the gradient was estimated at, unit cube ``(d,)``; None: the current
        parameters (a strategy that searches around a point of its own, such as ``gradient``'s iterate, says which).
    """

    params: dict[str, float]
    explanation: str
    estimate: dict[str, float] = field(default_factory=dict)
    gradient: np.ndarray | None = None
    gradient_at: np.ndarray | None = None


@runtime_checkable
class UpdateStrategy(Protocol):
    """A way of choosing the next parameters (see the module docstring for the contract)."""

    name: str

    def propose(self, loop: "FeedbackLoopSystem") -> Proposal: ...

    def observe(self, loop: "FeedbackLoopSystem", record: "FeedbackRecord") -> None: ...


StrategyFactory = Callable[..., UpdateStrategy]

_REGISTRY: dict[str, StrategyFactory] = {}


def register_strategy(name: str, factory: StrategyFactory, *, replace: bool = False) -> None:
    """Make ``factory(loop) -> UpdateStrategy`` selectable as ``loop.update_parameters(strategy=name)``.

    :param replace: allow replacing an existing name (otherwise a clash raises ``ValueError``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"strategy name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"strategy {name!r}: factory must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise ValueError(f"strategy {name!r} is already registered (pass replace=True to override it)")
    _REGISTRY[name] = factory


def unregister_strategy(name: str) -> None:
    """Remove a registered name (no error if absent)."""
    _REGISTRY.pop(name, None)


ALIASES = {"spsa": "gradient", "optuna": "bayesian"}
"""Built-in names that select the same strategy as another."""


def canonical_strategy(name: str) -> str:
    """The name an alias stands for (options given under either name apply to both)."""
    return ALIASES.get(name, name)


def available_strategies() -> tuple[str, ...]:
    """Registered names, built-ins first."""
    _register_builtins()
    return tuple(_REGISTRY)


def check_strategy_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` now, not at the first update, when ``options`` has a name the factory of strategy
    ``name`` does not take (factories taking ``**options``, as ``bandit`` and ``policy``, check theirs when built)."""
    _register_builtins()
    factory = _REGISTRY[name]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins): it checks its own when built
        return
    try:
        signature.bind(None, **options)
    except TypeError as exc:
        kinds = {p: signature.parameters[p].kind for p in list(signature.parameters)[1:]}
        taken = [p for p, kind in kinds.items() if kind is not inspect.Parameter.VAR_KEYWORD]
        raise ValueError(f"strategy {canonical_strategy(name)!r}: {exc}; its options: {', '.join(taken)}") from None


def make_strategy(name: str, loop: "FeedbackLoopSystem", options: dict[str, Any] | None = None) -> UpdateStrategy:
    """Instantiate the strategy registered as ``name`` for ``loop``."""
    _register_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; registered: {', '.join(_REGISTRY)}")
    strategy = _REGISTRY[name](loop, **options) if options else _REGISTRY[name](loop)
    missing = [m for m in ("propose", "observe") if not callable(getattr(strategy, m, None))]
    if missing or not isinstance(getattr(strategy, "name", None), str):
        raise TypeError(f"strategy {name!r}: the factory returned {strategy!r}, which lacks {missing or ['name']}")
    return strategy


def _bandit_strategy(loop: "FeedbackLoopSystem", **options: Any) -> UpdateStrategy:
    from bandits.feedback_strategy import BanditStrategy  # imported on use: keeps the loop free of the bandits package

    options.setdefault("seed", getattr(loop, "seed", None))
    return BanditStrategy(**options)


def _policy_strategy(loop: "FeedbackLoopSystem", model: str | None = None, **options: Any) -> UpdateStrategy:
    if model is None:
        raise ValueError("strategy 'policy' needs a trained model: strategy_options={'policy': {'model': 'path.zip'}}")
    from agents.strategy import PolicyStrategy  # imported on use: torch loads only when a policy is asked for

    return PolicyStrategy.from_model(model, sample_rate=getattr(loop, "sample_rate", None), **options)


_BUILTINS_DONE = False


def _register_builtins() -> None:
    """Register the built-in strategies (their modules import cma/optuna/sklearn only when used)."""
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    from feedback_env.feedback_loop import offline, optimizers  # may fail: then the next call tries again

    for name, factory in (
        ("gradient", optimizers.GradientStrategy),
        ("cma", optimizers.CMAStrategy),
        ("bayesian", optimizers.BayesianStrategy),
        ("random", optimizers.RandomSearchStrategy),
        ("offline", offline.OfflineStrategy),
        ("bandit", _bandit_strategy),
        ("policy", _policy_strategy),
    ):
        _REGISTRY.setdefault(name, factory)
    for alias, name in ALIASES.items():
        _REGISTRY.setdefault(alias, _REGISTRY[name])
    _BUILTINS_DONE = True
