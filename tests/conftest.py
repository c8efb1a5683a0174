import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def sb3_logs_in_pytest_tmp(tmp_path_factory):
    """SB3 ``learn()`` without a logger makes an empty ``SB3-<time>`` folder in the system temp dir per call
    (``stable_baselines3.common.logger.configure``); ``SB3_LOGDIR`` sends them to pytest's own temp dir."""
    old = os.environ.get("SB3_LOGDIR")
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))
    yield
    if old is None:
        del os.environ["SB3_LOGDIR"]
    else:
        os.environ["SB3_LOGDIR"] = old


@pytest.fixture(scope="session")
def builtin():
    import scenarios

    return scenarios.load("builtin")


def si_sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Plain SI-SDR for assertions that must not depend on the code under test."""
    e, r = np.asarray(estimate, np.float64), np.asarray(reference, np.float64)
    target = np.dot(e, r) / np.dot(r, r) * r
    return float(10 * np.log10(np.sum(target**2) / np.sum((e - target) ** 2)))
