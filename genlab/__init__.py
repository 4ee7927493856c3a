"""genlab: train, sweep and report deep generative models from one line of Hydra overrides."""

__version__ = "0.1.0"
