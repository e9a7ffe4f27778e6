"""The models' quality: the baseline VAE, the family, the zoo, bidirectional twins, discrete codes,
denoising, few labels, the total-correlation estimators."""
