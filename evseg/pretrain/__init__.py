"""ECDDP (Yang, Pan, Liu; arXiv 2311.11533): self-supervised dense pre-training of an event backbone."""
