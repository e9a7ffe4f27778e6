"""Attention maps that explain a VAE: the gradient attention of Liu et al. (CVPR 2020) for any
conv VAE and its anomaly variant (``gradcam``, ``gradcam_anomaly``), and a grad2vae's own
second-order attention (``grad2_attention``); ``explanation_figure`` draws them."""
from .figures import METHODS, explain, explanation_figure
from .grad2 import grad2_attention
from .gradcam import NormalStatistics, anomaly_distance, conv_layers, gradcam, gradcam_anomaly, normal_statistics, resolve_layer

__all__ = ["METHODS", "NormalStatistics", "anomaly_distance", "conv_layers", "explain", "explanation_figure", "grad2_attention",
           "gradcam", "gradcam_anomaly", "normal_statistics", "resolve_layer"]
