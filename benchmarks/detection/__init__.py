"""Anomaly detection: scores, thresholds, calibration, tasks nobody tuned it on, exported detectors."""
