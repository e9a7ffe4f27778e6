"""Figures and the self-contained run report."""
from ..plotting import image_grid, save_grid
from .figures import loss_curves
from .html import write_report

__all__ = ["image_grid", "loss_curves", "save_grid", "write_report"]
