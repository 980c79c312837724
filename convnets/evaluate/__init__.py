"""Evaluation protocols: multi-crop averaging and multi-view (multi-scale, flipped, dense) evaluation."""
