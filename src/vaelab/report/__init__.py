"""Figures and the self-contained run report."""
from .figures import image_grid, loss_curves, save_grid
from .html import write_report

__all__ = ["image_grid", "loss_curves", "save_grid", "write_report"]
