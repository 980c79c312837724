"""R-CNN's host-side learners (Girshick et al. 2014): per-class linear SVMs with hard negative mining, ridge box
regressors, feature scaling and the test-time per-class selection. Pure numpy / scikit-learn on cached features.

SVMs (sec. 2.3 "Object category classifiers", appendix B; rbgirshick/rcnn rcnn_train.m):
- positives: the ground-truth boxes of the class only; negatives: regions whose IoU with every gt box of that
  class is below 0.3 (`neg_ovr_thresh`; a box of another class is a negative too, gt boxes included);
- liblinear `-s 3` (L2-regularised L1-loss (hinge) SVM, dual) with `-c 1e-3 -w1 2 -B 10`, default tolerance 0.1:
  scikit-learn's `LinearSVC(loss='hinge', dual=True, C=1e-3, class_weight={1: 2}, intercept_scaling=10,
  tol=0.1)` wraps the same liblinear solver (the bias is the weight of a constant feature 10, regularised);
- hard negative mining, one pass over the images in order (`max_hard_epochs = 1`, "one pass over the data is
  enough"): the first image adds all of its negatives; later images add the negatives scoring above
  `hard_thresh` (-1.0001) under the current model; a class's SVM is retrained after its first image, whenever
  more than `retrain_limit` (2000) negatives were added since its last training, and after the last image;
  after each retraining the easy negatives (score < `evict_thresh`, -1.2) leave the cache (init_cache and
  the mining loop of rcnn_train.m). Each image is visited once, so no duplicate check is needed. The authors'
  k-fold models (`k_folds`, used only to score training images) are not built.
- features scaled so that their mean L2 norm is 20 (rcnn_scale_features.m; the norm is measured on 200 random
  regions of each of 200 random training images, rcnn_feature_stats.m): `scale_factor`.

Box regression (appendix C; bbox_regression/rcnn_train_bbox_regressor.m): per class, ridge regression
(lambda 1000, bias column regularised too, solved in closed form) from the scaled pool5 features of regions
with IoU > 0.6 with a gt box of that class (gt boxes included) to the targets (dy, dx, dh, dw) of that gt box
(`convnets.models.detection.boxes.encode`). The authors centre the targets (mu) and whiten them (T) before
solving; ridge regression is linear in the targets, so the whitening cancels in `X Beta T^-1` and only the
centring is kept.

Test (rcnn_test.m, rcnn_test_bbox_regressor.m): per class, the `top_k` (100) best-scoring proposals of the image
(gt boxes never), optionally moved by the class's regressor and clipped, then greedy NMS at IoU 0.3
(`convnets.evaluate.voc_map` scores them). The authors' extra threshold that keeps at most 40 boxes per image per
class over the whole test set (`max_per_set`, a memory bound) is not applied.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from convnets.models.detection import boxes as box_ops

TARGET_NORM = 20.0  # rcnn_scale_features.m: "We rescale all features to have an average norm of 20"


def scale_factor(norms: np.ndarray) -> float:
    """The factor that brings features of these L2 norms to a mean norm of 20 (rcnn_scale_features.m)."""
    mean = float(np.mean(norms)) if len(norms) else 0.0
    return TARGET_NORM / mean if mean > 0 else 1.0


@dataclasses.dataclass(frozen=True)
class SvmSettings:
    """rcnn_train.m's defaults (`svm_C`, `pos_loss_weight`, `bias_mult`) and its cache constants."""

    C: float = 1e-3
    pos_weight: float = 2.0
    bias_mult: float = 10.0
    neg_iou: float = 0.3
    hard_thresh: float = -1.0001
    evict_thresh: float = -1.2
    retrain_limit: int = 2000
    tol: float = 0.1  # liblinear's default eps for -s 3


def train_linear_svm(pos: np.ndarray, neg: np.ndarray, s: SvmSettings) -> tuple[np.ndarray, float]:
    """(w [D], b) of liblinear -s 3 -c C -w1 pos_weight -B bias_mult on positives `pos` and negatives `neg`."""
    from sklearn.svm import LinearSVC

    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
    svm = LinearSVC(loss='hinge', dual=True, C=s.C, class_weight={1: s.pos_weight}, intercept_scaling=s.bias_mult,
                    tol=s.tol, max_iter=10_000)
    with warnings.catch_warnings():  # liblinear's iteration cap at a loose tolerance: the authors' solver too
        warnings.simplefilter('ignore')
        svm.fit(x, y)
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])


class HardNegativeSvms:
    """One linear SVM per class, trained by rcnn_train.m's hard negative mining over images fed in order."""

    def __init__(self, positives: list[np.ndarray], dim: int, settings: SvmSettings = SvmSettings()):
        self.s = settings
        self.num_classes = len(positives)
        self.pos = [np.asarray(p, np.float32).reshape(-1, dim) for p in positives]
        self.neg = [np.zeros((0, dim), np.float32) for _ in positives]
        self.added = [0] * self.num_classes
        self.w = np.zeros((dim, self.num_classes), np.float32)
        self.b = np.zeros((self.num_classes,), np.float32)
        self.trained = np.zeros((self.num_classes,), bool)
        self.first_time = True
        self.retrainings = 0

    def add_image(self, feats: np.ndarray, overlap: np.ndarray) -> None:
        """Mines one image: `feats [R, D]` (scaled) of its valid regions, `overlap [R, N]` per-class max IoU."""
        negative = overlap < self.s.neg_iou
        if not self.first_time:
            negative &= (feats @ self.w + self.b) > self.s.hard_thresh
        for j in range(self.num_classes):
            rows = feats[negative[:, j]]
            if len(rows):
                self.neg[j] = np.concatenate([self.neg[j], rows])
                self.added[j] += len(rows)
            if self.first_time or self.added[j] > self.s.retrain_limit:
                self._update(j)
        self.first_time = False

    def finish(self) -> None:
        """The final update of every class after the last image (rcnn_train.m's `is_last_time`)."""
        for j in range(self.num_classes):
            self._update(j)

    def _update(self, j: int) -> None:
        if not len(self.neg[j]) or not len(self.pos[j]):
            return  # rcnn_train.m trains only with negatives; a class without positives has no SVM
        w, b = train_linear_svm(self.pos[j], self.neg[j], self.s)
        self.w[:, j], self.b[j], self.trained[j] = w, b, True
        self.added[j] = 0
        self.retrainings += 1
        self.neg[j] = self.neg[j][self.neg[j] @ w + b >= self.s.evict_thresh]  # evict easy negatives

    def scores(self, feats: np.ndarray) -> np.ndarray:
        """`[R, N]` SVM scores; -inf for classes without a trained SVM."""
        return np.where(self.trained, feats @ self.w + self.b, -np.inf)


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(beta [D + 1, 4], mu [4]): ridge regression of centred targets `y` on `[x, 1]`, every weight regularised
    (rcnn_train_bbox_regressor.m 'ridge_reg_chol'); the dual form when there are fewer examples than features."""
    a = np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1).astype(np.float64)
    mu = y.mean(axis=0)
    yc = (y - mu).astype(np.float64)
    if len(a) < a.shape[1]:
        beta = a.T @ np.linalg.solve(a @ a.T + lam * np.eye(len(a)), yc)
    else:
        beta = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ yc)
    return beta.astype(np.float32), mu.astype(np.float32)


class BoxRegressors:
    """Per-class ridge regressors from region features to (dy, dx, dh, dw); examples collected image by image."""

    def __init__(self, num_classes: int, min_iou: float = 0.6, lam: float = 1000.0):
        self.min_iou, self.lam = min_iou, lam
        self.x: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.y: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
        self.models: list[tuple[np.ndarray, np.ndarray] | None] = [None] * num_classes

    def add_image(self, feats: np.ndarray, regions: np.ndarray, gt: np.ndarray, gt_classes: np.ndarray) -> None:
        """Regions (`feats`, `regions [R, 4]`) with IoU > min_iou with their best gt box (`gt [G, 4]`, usable
        ones only) become examples of that box's class (rcnn_train_bbox_regressor.m get_examples)."""
        if not len(gt) or not len(regions):
            return
        iou = iou_matrix(regions, gt)
        best = iou.argmax(axis=1)
        sel = iou[np.arange(len(regions)), best] > self.min_iou
        if not sel.any():
            return
        targets = np.asarray(box_ops.encode(gt[best[sel]], regions[sel]))
        for j in np.unique(gt_classes[best[sel]]):
            rows = gt_classes[best[sel]] == j
            self.x[j].append(feats[sel][rows])
            self.y[j].append(targets[rows])

    def fit(self) -> int:
        """Fits every class with examples; returns how many classes got a regressor."""
        for j in range(len(self.x)):
            if self.x[j]:
                self.models[j] = fit_ridge(np.concatenate(self.x[j]), np.concatenate(self.y[j]), self.lam)
            self.x[j], self.y[j] = [], []  # free the examples
        return sum(m is not None for m in self.models)

    def predict(self, j: int, feats: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """Boxes [R, 4] moved by class j's regressor (unchanged where the class has none)."""
        if self.models[j] is None:
            return regions
        beta, mu = self.models[j]
        deltas = feats @ beta[:-1] + beta[-1] + mu
        return np.asarray(box_ops.decode(deltas, regions))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of edge boxes (numpy twin of `boxes.iou_matrix`, for the host loops where a device call per
    NMS step would cost more than the arithmetic)."""
    ih = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0)
    iw = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0)
    inter = ih * iw
    area = lambda x: np.maximum(x[:, 2] - x[:, 0], 0) * np.maximum(x[:, 3] - x[:, 1], 0)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (nms.m / py_cpu_nms.py: suppress IoU > `iou`), indices of kept boxes by decreasing score."""
    order = np.argsort(-scores, kind='stable')
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        if len(order) == 1:
            break
        rest = order[1:]
        ov = iou_matrix(boxes[i][None], boxes[rest])[0]
        order = rest[ov <= iou]
    return np.asarray(keep, np.int64)


def image_detections(regions: np.ndarray, scores: np.ndarray, *, top_k: int = 100, nms_iou: float = 0.3,
                     regress=None, size: tuple[float, float] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections (boxes [D, 4], 0-based classes [D], scores [D]) of one image from its proposals' per-class
    `scores [R, N]` (-inf: not a candidate): per class the `top_k` best, `regress(j, rows, boxes)` if given,
    clipped to `size` (height, width), NMS at `nms_iou`."""
    out_b, out_c, out_s = [], [], []
    for j in range(scores.shape[1]):
        cand = np.flatnonzero(np.isfinite(scores[:, j]))
        if not len(cand):
            continue
        cand = cand[np.argsort(-scores[cand, j], kind='stable')[:top_k]]
        boxes = regions[cand]
        if regress is not None:
            boxes = regress(j, cand, boxes)
        if size is not None:
            boxes = np.stack([np.clip(boxes[:, 0], 0, size[0]), np.clip(boxes[:, 1], 0, size[1]),
                              np.clip(boxes[:, 2], 0, size[0]), np.clip(boxes[:, 3], 0, size[1])], axis=1)
        keep = nms(boxes, scores[cand, j], nms_iou)
        out_b.append(boxes[keep])
        out_c.append(np.full(len(keep), j, np.int64))
        out_s.append(scores[cand[keep], j])
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.float32)
    return (np.concatenate(out_b).astype(np.float32), np.concatenate(out_c),
            np.concatenate(out_s).astype(np.float32))
