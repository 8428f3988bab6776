"""Experiments across runs: train-and-score pipeline, sweeps, projection, leaderboards, figures."""
