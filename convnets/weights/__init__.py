"""Pretrained weights: import the public ImageNet weights of torchvision and the Keras applications into
checkpoints of this project, and export ours back to torchvision state dicts.

- :mod:`convnets.weights.files`: reading ``.safetensors``, ``.npz``, ``.pth`` (torch ``weights_only`` only) and
  Keras ``.h5`` files; writing ``.safetensors`` / ``.npz``.
- :mod:`convnets.weights.mapping`: name-and-shape mappings with complete checks (every tensor used once).
- :mod:`convnets.weights.sources`: the importable networks (file, URL, our model, preprocessing, published top-1),
  registered by :mod:`convnets.weights.torchvision` and :mod:`convnets.weights.keras`.
- :mod:`convnets.weights.importer`: a file -> our variables, and back.
- ``python -m convnets.weights.import`` / ``python -m convnets.weights.export``: the command lines.
- :mod:`convnets.weights.seeded`: seeded stand-in weights for the parity tests (numpy only).
"""
