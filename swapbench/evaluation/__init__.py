"""Evaluation: the evaluator and the registered metrics."""
