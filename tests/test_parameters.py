import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback_env.errors import ParameterError
from feedback_env.parameters import Parameter, ParameterSpace
from feedback_env.pipeline import PARAMETER_SPACE


def test_pipeline_space_has_at_least_12_named_parameters_with_units():
    assert PARAMETER_SPACE.dim >= 12
    units = ("_hz", "_db", "_ms", "_s", "_lufs", "ratio", "oversubtraction")
    for p in PARAMETER_SPACE.parameters:
        assert any(p.name.endswith(u) for u in units), p.name
        assert p.doc
    assert {p.scale for p in PARAMETER_SPACE.parameters} == {"linear", "log"}


def test_log_scale_maps_geometric_midpoint_to_zero():
    p = Parameter("f_hz", 10.0, 1000.0, 100.0, "log")
    assert p.to_unit(100.0) == pytest.approx(0.0)
    assert p.from_unit(0.0) == pytest.approx(100.0)
    assert p.from_unit(-1.0) == pytest.approx(10.0) and p.from_unit(1.0) == pytest.approx(1000.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=PARAMETER_SPACE.dim, max_size=PARAMETER_SPACE.dim))
def test_unit_round_trip(u):
    x = np.array(u)
    params = PARAMETER_SPACE.from_unit(x)
    for p in PARAMETER_SPACE.parameters:
        assert p.low - 1e-9 <= params[p.name] <= p.high + 1e-9
    np.testing.assert_allclose(PARAMETER_SPACE.to_unit(params), x, atol=1e-5)


def test_from_unit_clips_and_to_unit_is_float32():
    x = np.full(PARAMETER_SPACE.dim, 3.0)
    params = PARAMETER_SPACE.from_unit(x)
    assert all(params[p.name] == pytest.approx(p.high) for p in PARAMETER_SPACE.parameters)
    assert PARAMETER_SPACE.to_unit(params).dtype == np.float32


@pytest.mark.parametrize(
    "params, message",
    [
        ({"highpass_hz": 5000.0}, "outside"),
        ({"nope_hz": 1.0}, "unknown parameter 'nope_hz'"),
        ({"nr_floor_db": math.nan}, "finite"),
    ],
)
def test_validate_names_the_bad_parameter(params, message):
    with pytest.raises(ParameterError, match=message):
        PARAMETER_SPACE.validate(params)


def test_from_unit_rejects_wrong_shape_and_nan():
    with pytest.raises(ParameterError, match="shape"):
        PARAMETER_SPACE.from_unit(np.zeros(3))
    bad = np.zeros(PARAMETER_SPACE.dim)
    bad[2] = np.nan
    with pytest.raises(ParameterError, match="non-finite"):
        PARAMETER_SPACE.from_unit(bad)


def test_subspace_and_defaults():
    sub = PARAMETER_SPACE.subspace(["nr_floor_db", "highpass_hz"])
    assert sub.names == ("nr_floor_db", "highpass_hz")
    changed = sub.with_defaults({"nr_floor_db": -30.0})
    assert changed.defaults()["nr_floor_db"] == -30.0
    with pytest.raises(ParameterError):
        ParameterSpace([Parameter("a", 0, 1, 0.5), Parameter("a", 0, 1, 0.5)])
    with pytest.raises(ParameterError, match="log scale"):
        Parameter("b", 0.0, 1.0, 0.5, "log")


@pytest.mark.parametrize(
    "params, message",
    [
        ({"highpass_hz": None}, r"parameter 'highpass_hz': expected a number, got None"),
        ({"highpass_hz": np.array([100.0, 200.0])}, r"parameter 'highpass_hz': expected a number, got array"),
        ({"highpass_hz": "100"}, r"parameter 'highpass_hz': expected a number, got '100'"),
        (None, r"parameters must be a mapping of name to physical value, got NoneType"),
        ([("highpass_hz", 100.0)], r"parameters must be a mapping .* got list"),
    ],
)
def test_a_value_that_is_not_a_number_is_named(params, message):
    with pytest.raises(ParameterError, match=message):
        PARAMETER_SPACE.validate(params)
    if isinstance(params, dict):
        with pytest.raises(ParameterError, match=message):
            PARAMETER_SPACE.clip(params)
    assert PARAMETER_SPACE.validate({"highpass_hz": np.float32(100.0)}) == {"highpass_hz": 100.0}
    assert PARAMETER_SPACE.validate({"highpass_hz": np.array(100)}) == {"highpass_hz": 100.0}


def test_a_space_iterates_its_names_like_a_mapping():
    """``in`` takes names, so iteration gives names (before: ``for p in space`` raised "unknown parameter 0");
    ``space.parameters`` holds the Parameter objects."""
    space = PARAMETER_SPACE.subspace(["highpass_hz", "nr_floor_db"])
    assert list(space) == ["highpass_hz", "nr_floor_db"] and all(name in space for name in space)
    assert [space[name].low for name in space] == [p.low for p in space.parameters]
