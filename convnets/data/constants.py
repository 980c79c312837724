"""Dataset statistics shared by the preprocessing ops and the experiment files (one source for each number).

Pixel statistics are in 0..255 units, the units the ops work in until a value op runs.
"""

# Per-channel RGB mean of the ILSVRC-2012 training set, as released with the VGG Caffe models (BGR 103.939,
# 116.779, 123.68). Used as ``subtract_mean(IMAGENET_RGB_MEAN)`` by AlexNet, VGG, GoogLeNet and ResNet recipes.
IMAGENET_RGB_MEAN = (123.68, 116.779, 103.939)

# AlexNet sec 4.1 PCA colour augmentation needs the eigen-decomposition of the 3x3 covariance of ImageNet RGB
# pixel values, which the paper does not print. These are the widely used values of the fb.resnet.torch / Caffe
# ports (fb.resnet.torch: eigval (0.2175, 0.0188, 0.0045) for pixels in 0..1), times 255 so that they apply to
# pixels in 0..255 units: the shift is then exactly 255 times fb.resnet.torch's. Eigenvalues in decreasing
# order; eigenvector i is COLUMN i of IMAGENET_EIGVEC, rows are the R, G, B components (orthonormal to the 4
# printed digits).
IMAGENET_EIGVAL = (55.46, 4.794, 1.148)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
