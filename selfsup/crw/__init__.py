"""Space-time correspondence as a contrastive random walk (CRW).

    from selfsup.crw import CRW, CRWConfig, load_checkpoint
    model = load_checkpoint("models/crw/checkpoint.pt")           # or the official pretrained.pth
    feats = model.features(model.normalize_frames(frames))       # N x C x ceil(H/8) x ceil(W/8)
"""
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .encoder import ResNetEncoder, inspect_checkpoint
from .model import CIFAR_MEAN, CIFAR_STD, CRW, CRWConfig, IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CRW", "CRWConfig", "ResNetEncoder", "load_checkpoint", "save_checkpoint",
           "read_checkpoint", "inspect_checkpoint", "CheckpointError",
           "IMAGENET_MEAN", "IMAGENET_STD", "CIFAR_MEAN", "CIFAR_STD"]
