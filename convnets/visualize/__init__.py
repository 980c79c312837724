"""Seeing inside a trained network (Zeiler and Fergus 2013): DeconvNet projections, occlusion maps, filters.

:mod:`convnets.visualize.deconvnet` projects a conv layer's feature map back to pixel space through the stages
that :mod:`convnets.visualize.stages` describes for each supported model.
"""
