"""prewarm: keep pools of prebuilt (warm) workspaces ready on Kubernetes."""

__version__ = "0.1.0"
