"""The embedded synthetic world: training videos, DAVIS-, JHMDB- and VIP-format evaluation sets and
two unpaired image domains, all rendered from one seed (`generate`). See docs/synthetic.md."""
from ...config import SyntheticParams
from .world import (check_params, davis_scene, generate, item_rng, jhmdb_clip, train_scene, vip_clip,
                    davis_name, jhmdb_name, vip_name, video_name)

__all__ = ["SyntheticParams", "generate", "check_params", "item_rng", "train_scene", "davis_scene",
           "jhmdb_clip", "vip_clip", "video_name", "davis_name", "jhmdb_name", "vip_name"]
