"""Datasets: DSEC-Semantic (target events), Cityscapes (labelled source images), class tables."""

from evseg.data.cityscapes import Cityscapes
from evseg.data.classes import CITYSCAPES_19, ESS_11, ClassSet
from evseg.data.dsec import DSEC_SEMANTIC_SEQUENCES, DsecSemantic, DsecSequence, ess_label_indices, ess_num_samples

__all__ = ["CITYSCAPES_19", "Cityscapes", "ClassSet", "DSEC_SEMANTIC_SEQUENCES", "DsecSemantic", "DsecSequence",
           "ESS_11", "ess_label_indices", "ess_num_samples"]
