"""npgan: Generative Adversarial Nets (Goodfellow et al., 2014) on NumPy.

    import npgan
    from npgan import nn, optim, functional as F
"""
from . import backend
from .backend import use
from .tensor import Tensor, tensor, no_grad, is_grad_enabled, concatenate, grad
from . import functional, nn, optim
from .gradcheck import gradcheck, gradgradcheck, GradcheckError

__version__ = "0.1.0"
__all__ = ["Tensor", "tensor", "no_grad", "is_grad_enabled", "concatenate", "grad", "functional",
           "nn", "optim", "gradcheck", "gradgradcheck", "GradcheckError", "use", "backend"]
