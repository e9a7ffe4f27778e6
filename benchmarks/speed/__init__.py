"""Speed: training and evaluation throughput, the demo's and a first run's time, subnormal numbers."""
