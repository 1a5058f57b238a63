"""selfsup: self-supervised correspondence, translation and test-time learning.

The library is pure PyTorch / NumPy: it never imports DVC, Prefect or MLflow. Stages (`stages/`)
and flows (`pipeline/`) call it.
"""
__version__ = "0.1.0"
