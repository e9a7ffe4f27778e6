"""Grad2VAE: its attention's cost, convergence, artefacts, and the one-class tables (its paper's protocol)."""
