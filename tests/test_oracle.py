import numpy as np
import pytest

from feedback_env.oracle import clip_objective, cma_search, oracle_search
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


def test_the_oracle_keeps_the_best_of_its_runs_at_each_step_size():
    """Two basins, the better one at the edge of the cube far from the defaults: a narrow first step stays in
    the near one, a wide one reaches the far one; the oracle keeps the better run and counts both."""
    space = PARAMETER_SPACE.subspace(("hum_depth_db", "hum_width_hz"))
    defaults = space.to_unit(space.defaults(), dtype=np.float64)

    def objective(params):
        x = space.to_unit(params, dtype=np.float64)
        near = np.exp(-np.sum((x - defaults) ** 2) / 0.02)
        far = 1.5 * np.exp(-np.sum((x - np.array([-1.0, -1.0])) ** 2) / 0.5)
        return float(near + far)

    runs = [cma_search(objective, space, 120, 0, sigma) for sigma in (0.05, 0.8)]
    result = oracle_search(objective, space, 120, 0, sigmas=(0.05, 0.8))
    assert runs[0].score < 1.1 < 1.4 < runs[1].score  # each step size ends in its own basin
    assert result.score == runs[1].score and result.params == runs[1].params
    assert result.evaluations == len(result.history) == runs[0].evaluations + runs[1].evaluations
