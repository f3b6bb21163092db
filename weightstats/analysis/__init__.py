"""Analyses built on the statistics engine: checkpoints, the CLT question, VAE latents."""
