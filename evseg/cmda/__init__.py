"""CMDA (Xia et al., ICCV 2023): image + event cross-modality adaptation to night scenes."""
