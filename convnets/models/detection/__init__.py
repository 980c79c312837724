"""Detection building blocks shared by R-CNN, Fast R-CNN and Faster R-CNN: pure, jit-able JAX functions.

Boxes are float ``[..., 4]`` rows ``(y1, x1, y2, x2)`` in pixel coordinates measured at pixel EDGES, the
convention of ``convnets.data.ops.boxes`` (a box over pixel rows 2..5 is ``y1=2, y2=6``; area ``(y2-y1)(x2-x1)``).
The VOC devkit / Caffe code of the papers indexes pixels inclusively (``y2`` = last row, widths ``y2 - y1 + 1``);
functions where that matters take ``pixel_offset`` (0: edges, the default; 1: the devkit's inclusive indices).

Modules:

* ``boxes``: areas, IoU matrices, the R-CNN box parametrisation (encode / decode), clipping, small-box masks.
* ``nms``: greedy non-maximum suppression with a static output size, per-class (batched) NMS and the Fast R-CNN
  test-time detection selection (per-class NMS, score threshold, at most N detections per image).
* ``sampling``: proposal / gt matching into foreground, background and ignored labels, and balanced
  foreground / background minibatch sampling with static shapes.
* ``losses``: the smooth L1 loss of Fast R-CNN eq. 3.
* ``roi_pool``: Fast R-CNN RoI max pooling (as the authors' Caffe layer quantises it, gradient to the argmax) and
  RoIAlign (Mask R-CNN).
* ``warp``: R-CNN's region warping with context padding (appendix A's variants) and region mirroring.
* ``svd``: Fast R-CNN's truncated SVD of fc layers (sec. 3.1); ``pyramid``: its multi-scale test levels.
* ``anchors``, ``rpn_targets``, ``proposal_layer``: Faster R-CNN's anchors, RPN anchor labels / sampling / loss
  (eq. 1) and the proposal layer (decode, clip, min size, top-N, NMS 0.7); the RPN model and training come next.
"""
