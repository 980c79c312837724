"""Evaluators: functions from a train state to named numbers, chosen by `config.evals.<name>.type`.

A task lists the evaluator types it supports (`convnets.tasks.base.Task.evaluators`); `classification` provides
top-k accuracy under the papers' multi-crop / multi-view / dense protocols. Detection mAP and sample-quality
evaluators come with their tasks.
"""
