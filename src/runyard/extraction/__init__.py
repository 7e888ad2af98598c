"""Extraction evaluation (DESIGN §10): prompts, documents, model configs, extract runs and
their metrics."""
