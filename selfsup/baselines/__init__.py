"""The systems CRW's argument starts from, trained on the same clips and scored by the same propagation.

- `augment`: the hand-made augmentation family (crop, flip, rotation, colour jitter, grayscale,
  blur, noise, cutout) as batched tensor ops
- `instance`: instance discrimination, Exemplar-CNN surrogate classes and SimCLR's NT-Xent
- `colorization`: tracking by colourising videos (Lab, k-means colour clusters, attention copy)
- `retrieval`: Exemplar-SVM retrieval against cosine nearest neighbours
- `lecture`: the comparison (propagation, probes, retrieval, augmentation leave-one-out)

Every method trains `selfsup.crw.CRW` and saves with `selfsup.crw.save_checkpoint`, so its
checkpoint loads wherever a CRW checkpoint does.
"""
from .models import METHODS, baseline_config, baseline_info, build_model, save_baseline

__all__ = ["METHODS", "baseline_config", "baseline_info", "build_model", "save_baseline"]
