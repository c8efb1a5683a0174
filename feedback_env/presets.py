"""Named presets: the arms of ``StrategySelection-v0`` and a vocabulary for reports.

Each preset is a set of overrides on the pipeline defaults (physical units).
"""

from __future__ import annotations

from feedback_env.parameters import ParameterSpace
from feedback_env.pipeline import PARAMETER_SPACE, TRANSPARENT

PRESETS: dict[str, dict[str, float]] = {
    "bypass": dict(TRANSPARENT),
    "gentle": {"nr_oversubtraction": 1.0, "nr_floor_db": -8.0, "highpass_hz": 50.0, "comp_ratio": 1.0},
    "strong_denoise": {
        "nr_oversubtraction": 4.0,
        "nr_floor_db": -30.0,
        "nr_smoothing_ms": 500.0,
        "highpass_hz": 100.0,
        "comp_ratio": 1.0,
    },
    "hum_removal": {"hum_depth_db": 45.0, "hum_width_hz": 3.0, "highpass_hz": 120.0, "nr_floor_db": -10.0, "comp_ratio": 1.0},
    "fast_tracking": {"nr_noise_window_s": 0.4, "nr_oversubtraction": 2.0, "nr_floor_db": -20.0, "comp_ratio": 1.0},
    "voice_focus": {
        "highpass_hz": 150.0,
        "nr_oversubtraction": 2.0,
        "nr_floor_db": -18.0,
        "eq_low_db": -3.0,
        "eq_mid_db": 3.0,
        "eq_mid_hz": 2500.0,
        "comp_ratio": 2.0,
        "comp_threshold_db": -24.0,
    },
}


def preset_params(name: str, space: ParameterSpace = PARAMETER_SPACE) -> dict[str, float]:
    """Full physical parameter dict of preset ``name`` (overrides merged over the defaults)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return {**space.defaults(), **space.validate({k: v for k, v in PRESETS[name].items() if k in space})}
