"""Domain-adaptive self-training (DAFormer/DACS, HPL-ESS hybrid pseudo-labels): the pieces of one training step."""
