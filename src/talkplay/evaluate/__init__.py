"""Evaluation: metrics, baselines, protocols and reports."""
