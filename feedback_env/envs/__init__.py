"""Gymnasium environments around the enhancement pipeline (registered on ``import feedback_env``)."""
