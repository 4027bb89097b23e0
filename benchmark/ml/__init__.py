"""The machine-learning core: models, likelihoods, the method contract, the training loop, metrics."""
