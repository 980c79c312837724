"""Seeing inside a trained network (Zeiler and Fergus 2013): DeconvNet projections, occlusion maps, filters.

:mod:`convnets.visualize.deconvnet` projects a conv layer's feature map back to pixel space through the stages
that each supported model declares beside its definition (``deconv_stages()``, in the vocabulary of
:mod:`convnets.models.deconv_stages`; :func:`convnets.visualize.stages.describe` reads them).
"""
