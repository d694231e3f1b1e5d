"""ECDDP's context mining (../shared/reference/e2vid_ecddp.md §C.1): the teacher's patch tokens of the whole crop
are clustered per image by cosine k-means into "contexts", and each context's assignment map is carried into
the student's global crops, where a token belongs to a context when its warped assignment exceeds 0.25.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ASSIGNMENT_THRESHOLD", "cosine_kmeans", "warp_assignments"]

ASSIGNMENT_THRESHOLD = 0.25  # the released code's threshold on a token's warped assignment


@torch.no_grad()
def cosine_kmeans(tokens: Tensor, clusters: int, iterations: int, generator: torch.Generator) -> Tensor:
    """Per image, k-means on the unit sphere: ``tokens`` (B, N, D) -> cluster ids (B, N) in [0, clusters).

    The centroids start at ``clusters`` distinct tokens of the image drawn with ``generator`` (random
    initial centroids, as released); each iteration assigns every token to its most similar centroid and
    moves each centroid to the normalised sum of its tokens. A centroid that loses all its tokens keeps its
    place. Images with fewer tokens than clusters are an error.
    """
    batch, count, _ = tokens.shape
    if count < clusters:
        raise ValueError(f"{count} tokens cannot form {clusters} contexts: lower pretrain.context.clusters or "
                         "use larger crops")
    x = F.normalize(tokens.float(), dim=-1)
    first = torch.stack([torch.randperm(count, generator=generator)[:clusters] for _ in range(batch)])
    centroids = torch.gather(x, 1, first.to(x.device)[..., None].expand(-1, -1, x.shape[-1]))
    assignment = torch.einsum("bnd,bkd->bnk", x, centroids).argmax(dim=-1)
    for _ in range(iterations):
        one_hot = F.one_hot(assignment, clusters).to(x.dtype)  # (B, N, K)
        sums = torch.einsum("bnk,bnd->bkd", one_hot, x)
        empty = one_hot.sum(dim=1) == 0  # (B, K)
        centroids = torch.where(empty[..., None], centroids, F.normalize(sums, dim=-1))
        assignment = torch.einsum("bnd,bkd->bnk", x, centroids).argmax(dim=-1)
    return assignment


def warp_assignments(assignment: Tensor, clusters: int, grid_size: tuple[int, int], grids: Tensor) -> Tensor:
    """The contexts of the whole crop at the tokens of a crop of it.

    ``assignment``: (B, N) ids on the whole crop's token grid ``grid_size`` (h, w); ``grids``: (B, h', w', 2)
    the crop's token centres in the whole crop's normalised coordinates (``grid_sample``'s, x first). Returns
    (B, clusters, h' * w'): the bilinearly warped one-hot maps.
    """
    batch = assignment.shape[0]
    maps = F.one_hot(assignment, clusters).float().transpose(1, 2).reshape(batch, clusters, *grid_size)
    warped = F.grid_sample(maps, grids.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return warped.flatten(2)
