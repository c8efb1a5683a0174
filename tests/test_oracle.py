import numpy as np
import pytest

from feedback_env.oracle import clip_objective, cma_search
from feedback_env.pipeline import PARAMETER_SPACE


def test_cma_search_improves_on_the_defaults_within_its_budget(builtin):
    clip = builtin["brown_snr-5_m2"]
    objective = clip_objective(clip.noisy[:16000], clip.clean[:16000])
    start = objective(PARAMETER_SPACE.defaults())
    result = cma_search(objective, budget=60, seed=0, restarts=1)
    assert result.evaluations == len(result.history) <= 60
    assert result.score == max(result.history) > start + 0.5  # dB SI-SDR
    assert np.all(np.diff(result.best_so_far()) >= 0)
    PARAMETER_SPACE.validate(result.params, complete=True)
    assert objective(result.params) == result.score  # the reported setting reproduces its score


def test_cma_search_never_returns_worse_than_its_start(builtin):
    """With a budget too small for CMA to find anything better, the start itself comes back."""
    clip = builtin["white_snr+10_f2"]
    objective = clip_objective(clip.noisy[:16000], clip.clean[:16000])
    start = objective(PARAMETER_SPACE.defaults())
    for budget in (1, 3):
        result = cma_search(objective, budget=budget, seed=0, sigma0=0.9)
        assert result.history[0] == start and result.evaluations == budget
        assert result.score == max(result.history) >= start
    with pytest.raises(ValueError, match="budget"):
        cma_search(objective, budget=0)
