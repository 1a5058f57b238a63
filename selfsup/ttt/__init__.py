"""Test-time training with rotation prediction (Sun et al., ICML 2020) on a synthetic labelled image set.

    from selfsup.ttt import TTTNet, shape_images, corrupt, train_joint, ttt_standard, ttt_online
    images, labels = shape_images(4000, split="train")
    model = TTTNet(classes=10)
    train_joint(model, images, labels)
    test, test_labels = shape_images(500, split="test")
    result = ttt_standard(model, corrupt(test, "gaussian_noise", 5), test_labels)
    result["baseline"], result["accuracy"]          # without / with test-time training
"""
from .model import TTTNet
from .shapes import CLASSES, shape_images
from .shifts import SEVERITIES, SHIFTS, corrupt
from .test_time import TTTConfig, ttt_online, ttt_standard
from .train import (ANGLES, JointConfig, augment, evaluate, load_model, rotate, rotation_batch, save_model,
                    to_tensor, train_joint)

__all__ = ["TTTNet", "CLASSES", "shape_images", "SEVERITIES", "SHIFTS", "corrupt", "TTTConfig", "ttt_online",
           "ttt_standard", "ANGLES", "JointConfig", "augment", "evaluate", "load_model", "rotate",
           "rotation_batch", "save_model", "to_tensor", "train_joint"]
