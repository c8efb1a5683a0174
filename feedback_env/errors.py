"""The error types of the package: raised where a bad value enters, naming it and what was expected."""

from __future__ import annotations


class FeedbackEnvError(ValueError):
    """Base class of every error this package raises on bad input."""


class InvalidAudioError(FeedbackEnvError):
    """Audio that cannot be processed: NaN/Inf samples, empty or silent, wrong shape or rate, unreadable."""


class ParameterError(FeedbackEnvError):
    """An unknown parameter name or a value outside its bounds."""


class ScenarioError(FeedbackEnvError):
    """A scenario set that cannot be read: malformed manifest, missing or unreadable file."""


class MetricError(FeedbackEnvError):
    """A metric that cannot be computed on the audio it was given."""
