"""npgan: Generative Adversarial Nets (Goodfellow et al., 2014) on NumPy."""
from . import backend
from .backend import use

__version__ = "0.1.0"
