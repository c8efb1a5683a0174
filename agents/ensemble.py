"""A TD3 policy that acts with the mean action of several actors: snapshots of one run (a checkpoint ensemble),
and the runs of several seeds (a seed ensemble, :func:`seed_ensemble`).

Snapshot ensembles (G. Huang et al., "Snapshot Ensembles: Train 1, get M for free", ICLR 2017): the
actors a run passed through near its end make different mistakes on clips it never saw, and their mean
action makes fewer. Here a run's last checkpoint and its weight-averaged final model
(:class:`~agents.callbacks.WeightAveraging`; not the same thing, as the actor is nonlinear) close 17.9 and
47.4 %, 40.7 and 22.5 %, 16.9 and 0.5 % of the static-to-oracle gap on the test clips (seeds 0, 1, 2 of a
40k-step run with feature context 0 and without fresh noise); the mean action of the last four checkpoints
and the final model closes 47.6, 37.6 and 14.5 % (``benchmarks/learning.py``, ``policy`` against
``policy_last_weights`` and ``policy_final_model``; :class:`~agents.training.RunConfig` gives all seeds).

:class:`EnsembleTD3Policy` is an SB3 ``TD3Policy`` whose actor (and target actor) is an
:class:`EnsembleActor`, so the ensemble is one SB3 model: ``model.zip`` saves and loads with
:func:`agents.load_agent`, and ``predict``, :class:`~agents.RLFeedbackOptimizer` and the harness's
``td3:MODEL.zip`` use it unchanged. It keeps the critic of the model it was built from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.td3.policies import Actor, TD3Policy

from agents.prioritized import PrioritizedTD3


class EnsembleActor(BasePolicy):
    """``n_members`` TD3 actors (``members``, an ``nn.ModuleList``); the action is their mean, in [-1, 1].

    :param actor_kwargs: the arguments of SB3's TD3 ``Actor`` (the members share the features extractor).
    """

    def __init__(self, n_members: int, **actor_kwargs: Any):
        super().__init__(
            actor_kwargs["observation_space"],
            actor_kwargs["action_space"],
            features_extractor=actor_kwargs["features_extractor"],
            normalize_images=actor_kwargs.get("normalize_images", True),
            squash_output=True,
        )
        self.members = th.nn.ModuleList(Actor(**actor_kwargs) for _ in range(n_members))

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return th.stack([member(obs) for member in self.members]).mean(dim=0)

    def _predict(self, observation: th.Tensor, deterministic: bool = False) -> th.Tensor:
        return self(observation)


class EnsembleTD3Policy(TD3Policy):
    """TD3's policy with an :class:`EnsembleActor` of ``n_members`` actors (its other arguments: ``TD3Policy``'s)."""

    def __init__(self, *args: Any, n_members: int = 2, **kwargs: Any):
        if n_members < 1:
            raise ValueError(f"an ensemble needs at least one member, got n_members={n_members}")
        self.n_members = n_members  # make_actor runs inside TD3Policy.__init__
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor=None) -> EnsembleActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return EnsembleActor(self.n_members, **actor_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "n_members": self.n_members}


def actors_of(model: PrioritizedTD3) -> list[Actor]:
    """The actors a TD3 model acts with: the members of its ensemble, or its one actor."""
    actor = model.policy.actor
    return list(actor.members) if isinstance(actor, EnsembleActor) else [actor]


def _act_with(model: PrioritizedTD3, actors: Sequence[Actor]) -> PrioritizedTD3:
    """Make ``model`` act with the mean action of ``actors`` (in place; its critic is kept)."""
    kwargs = {**model.policy_kwargs, "n_members": len(actors)}
    policy = EnsembleTD3Policy(model.observation_space, model.action_space, model.lr_schedule, **kwargs).to(model.device)
    for target in (policy.actor, policy.actor_target):
        for member, actor in zip(target.members, actors):
            member.load_state_dict(actor.state_dict())
    policy.critic.load_state_dict(model.policy.critic.state_dict())
    policy.critic_target.load_state_dict(model.policy.critic_target.state_dict())
    policy.set_training_mode(False)
    model.policy, model.policy_class, model.policy_kwargs = policy, EnsembleTD3Policy, kwargs
    model._create_aliases()
    return model


def checkpoint_ensemble(model: PrioritizedTD3, checkpoints: Sequence[str | Path]) -> PrioritizedTD3:
    """Make ``model`` act with the mean action of the actors saved in ``checkpoints`` and its own (last member).

    In place: ``model.policy`` becomes an :class:`EnsembleTD3Policy` (``policy_kwargs["n_members"]``
    set, so the model saves and loads as one); the critic is ``model``'s, the target actors start as
    copies of the actors (as TD3 starts them), should training go on. Returns ``model``.
    """
    if type(model.policy) is not TD3Policy:
        raise TypeError(f"a checkpoint ensemble needs a TD3 model with the standard TD3Policy, got {type(model.policy).__name__}")
    saved = [type(model).load(path, device=model.device).policy.actor for path in checkpoints]
    return _act_with(model, saved + [model.policy.actor])


def seed_ensemble(models: Sequence[PrioritizedTD3]) -> PrioritizedTD3:
    """Make the first of ``models`` (TD3 runs from different seeds) act with the mean action of all
    their actors (each model's ensemble members, or its actor); in place, with the first model's critic.

    Runs from different seeds err differently on clips none of them saw, more than the snapshots of
    one run do, so their mean errs less (see :class:`~agents.training.RunConfig`'s ``members``).
    """
    if not models or any(not isinstance(m.policy, TD3Policy) for m in models):
        raise TypeError("a seed ensemble needs one or more TD3 models")
    return _act_with(models[0], [actor for m in models for actor in actors_of(m)])


def member_predictor(model: PrioritizedTD3, index: int) -> Callable[[np.ndarray], np.ndarray]:
    """Observation (or a batch) -> the action of one member of an ensemble model (``-1``: the model it was built from)."""
    actor = model.policy.actor.members[index]

    def predict(obs: np.ndarray) -> np.ndarray:
        tensor, batched = model.policy.obs_to_tensor(np.asarray(obs, dtype=np.float32))
        with th.no_grad():
            actions = actor(tensor).cpu().numpy()
        return actions if batched else actions[0]

    return predict
