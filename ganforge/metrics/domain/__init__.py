"""The domain evaluator: a small classifier trained on the dataset itself, whose penultimate
features are the FID/KID/precision-recall space for datasets the ImageNet Inception does not
fit (grayscale, small, not photographs).

- :mod:`ganforge.metrics.domain.network`: the network, its stored files and the registered
  ``domain`` feature extractor (loading only);
- :mod:`ganforge.metrics.domain.train`: training one (``ganforge evaluator train``).
"""
