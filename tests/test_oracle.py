import numpy as np

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
