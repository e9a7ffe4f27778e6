"""The report's loss curves: one panel per distinct term."""
import csv

import vaelab.report.figures as figures


def write_log(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
        w.writeheader()
        w.writerows(rows)


def panels_drawn(monkeypatch, log, out):
    seen = []
    real = figures.term_panels
    monkeypatch.setattr(figures, "term_panels", lambda terms: seen.append(list(terms)) or real(terms))
    assert figures.loss_curves(log, out) is not None and out.is_file()
    return seen[0]


def test_a_loss_equal_to_the_nelbo_shares_its_panel(tmp_path, monkeypatch):
    vae = [{"step": i, "train/loss": 100.0 - i, "train/nelbo": 100.0 - i, "train/kl": 3.0 + i, "train/rec": 97.0 - 2 * i}
           for i in range(20)]
    vae.append({"step": 20, "val/loss": 81.0, "val/nelbo": 81.0})
    write_log(tmp_path / "vae.csv", vae)
    assert panels_drawn(monkeypatch, tmp_path / "vae.csv", tmp_path / "vae.png") == ["kl", "nelbo", "rec"]
    # a beta-VAE's loss weighs the KL by beta: another curve, its own panel
    beta = [{**r, "train/loss": r["train/rec"] + 4 * r["train/kl"]} for r in vae[:-1]]
    write_log(tmp_path / "beta.csv", beta)
    assert panels_drawn(monkeypatch, tmp_path / "beta.csv", tmp_path / "beta.png") == ["kl", "loss", "nelbo", "rec"]
    assert figures.same_series(vae, "loss", "nelbo") and not figures.same_series(beta, "loss", "nelbo")
