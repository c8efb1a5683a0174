"""The feedback loop: collect feedback on the pipeline's output, analyse it, update parameters, roll back.

``FeedbackLoopSystem`` (:mod:`.system`) is the entry point; :mod:`.strategies` is the registry other
packages plug update strategies into; :mod:`.convergence` holds ``ConvergenceAnalyzer``.
"""

from __future__ import annotations

from feedback_env.feedback_loop.analysis import PerformanceAnalysis, Trend
from feedback_env.feedback_loop.convergence import ConvergenceAnalyzer, ConvergenceReport
from feedback_env.feedback_loop.history import ProcessingHistory
from feedback_env.feedback_loop.records import FeedbackRecord, RollbackEvent, UpdateRecord
from feedback_env.feedback_loop.storage import LoopFileError
from feedback_env.feedback_loop.strategies import (
    Proposal,
    UpdateStrategy,
    available_strategies,
    register_strategy,
    unregister_strategy,
)
from feedback_env.feedback_loop.system import DEFAULT_TUNED, FeedbackLoopSystem, NoChunkError

__all__ = [
    "DEFAULT_TUNED",
    "ConvergenceAnalyzer",
    "ConvergenceReport",
    "FeedbackLoopSystem",
    "FeedbackRecord",
    "LoopFileError",
    "NoChunkError",
    "PerformanceAnalysis",
    "ProcessingHistory",
    "Proposal",
    "RollbackEvent",
    "Trend",
    "UpdateRecord",
    "UpdateStrategy",
    "available_strategies",
    "register_strategy",
    "unregister_strategy",
]
