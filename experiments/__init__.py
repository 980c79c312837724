"""Experiment configs: one file per paper and variant, each importing `default` and setting what differs."""
