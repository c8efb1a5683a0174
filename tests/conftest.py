import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def builtin():
    import scenarios

    return scenarios.load("builtin")


def si_sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Plain SI-SDR for assertions that must not depend on the code under test."""
    e, r = np.asarray(estimate, np.float64), np.asarray(reference, np.float64)
    target = np.dot(e, r) / np.dot(r, r) * r
    return float(10 * np.log10(np.sum(target**2) / np.sum((e - target) ** 2)))
