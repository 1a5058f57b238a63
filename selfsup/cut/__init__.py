"""Contrastive unpaired translation: CUT, FastCUT and SinCUT (Park et al., ECCV 2020).

    from selfsup.cut import CUTConfig, TrainConfig, train, load_generator, translate_folder
"""
from .infer import load_generator, translate_folder
from .losses import lsgan_d_loss, lsgan_g_loss, nonsat_d_loss, nonsat_g_loss, patch_nce, r1_penalty
from .model import CUTConfig, CUTModel, SinCUTModel, build_model
from .networks import PatchGANDiscriminator, PatchSampleF, ResnetGenerator
from .stylegan import SinCUTDiscriminator, SinCUTGenerator
from .train import TrainConfig, lr_factor, train

__all__ = ["CUTConfig", "CUTModel", "SinCUTModel", "build_model", "TrainConfig", "train", "lr_factor",
           "ResnetGenerator", "PatchGANDiscriminator", "PatchSampleF", "SinCUTGenerator",
           "SinCUTDiscriminator", "patch_nce", "lsgan_d_loss", "lsgan_g_loss", "nonsat_d_loss",
           "nonsat_g_loss", "r1_penalty", "load_generator", "translate_folder"]
